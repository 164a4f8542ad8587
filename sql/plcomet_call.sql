-- Calling plcomet functions: "$x" gives the value as to_jsonb renders it,
-- "${x}" its text inside a string, "$$" a dollar sign.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

CREATE TYPE call_point AS (x int, y int);

-- typed values
CREATE FUNCTION call_types(i int, b bigint, n numeric, f float8, t text,
                           ok boolean, j jsonb, js json, p call_point,
                           arr int[], ts timestamptz, nothing text)
RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "call:types",
 "data": {"i": "$i", "b": "$b", "n": "$n", "f": "$f", "t": "$t", "ok": "$ok",
          "j": "$j", "js": "$js", "p": "$p", "arr": "$arr", "ts": "$ts",
          "nothing": "$nothing"}}
$$;
SET timezone = 'UTC';
SELECT jsonb_pretty(call_types(1, 9007199254740993, 1.50, 'NaN', 'say "hi"\', true,
       '{"k": [1, {"z": null}]}', '{"js": 1}', ROW(3, 4), ARRAY[1, 2],
       '2026-01-02 03:04:05+00', NULL));
SELECT seq, data -> 'p' AS p FROM comet.replay('call:types');

-- interpolation
-- (a body that contains "$$" needs another dollar quote, such as $body$)
CREATE FUNCTION call_text(who text, n int, p call_point, nothing text)
RETURNS jsonb LANGUAGE plcomet AS $body$
{"channel": "call:text",
 "data": {"greeting": "Hello, ${who}! You have ${n} new messages.",
          "dollars": "$$${n}.00 and $$$$", "just_dollar": "$$",
          "point": "${p}", "empty": "[${nothing}]", "x": "${p.x}",
          "key ${who}": "keys interpolate too", "$n": "so does this"}}
$body$;
SELECT jsonb_pretty(call_text('Zoë "Z" 你好', 3, ROW(1, 2), NULL));

-- numbered and case-folded references
CREATE FUNCTION call_numbered(first_arg text, "Second" int) RETURNS jsonb
LANGUAGE plcomet AS $$
{"channel": "call:numbered", "data": ["$1", "$2", "$FIRST_ARG", "$Second", "${1}-${2}"]}
$$;
SELECT call_numbered('a', 2);

-- channels: templates, arrays, values that are arrays
CREATE FUNCTION call_channels(grid int, extra text[]) RETURNS void
LANGUAGE plcomet AS $$
{"channel": ["call:grid:${grid}", "call:all"], "data": {"grid": "$grid"}}
$$;
SELECT call_channels(7, NULL);
CREATE FUNCTION call_list(targets text[], msg text) RETURNS void
LANGUAGE plcomet AS $$
{"channel": "$targets", "data": "$msg"}
$$;
SELECT call_list(ARRAY['call:list:a', 'call:list:b'], 'to both');
SELECT call_list(ARRAY[]::text[], 'to nobody');
CREATE FUNCTION call_numeric_channel(n int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "$n", "data": "numbered"}
$$;
SELECT call_numeric_channel(12345);
-- a channel template with JSON escapes in its literal text
CREATE FUNCTION call_escaped_channel(n int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "call:\u0041${n}\/x", "data": "escaped"}
$$;
SELECT call_escaped_channel(1);
SELECT channel, seq, data FROM comet.packets WHERE channel = 'call:A1/x';
SELECT channel, seq, data FROM comet.packets
 WHERE channel LIKE 'call:grid:%' OR channel = 'call:all' OR channel LIKE 'call:list:%'
    OR channel = '12345'
 ORDER BY channel, seq;

-- composite and record arguments, VARIADIC
CREATE FUNCTION call_record(r record) RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "call:record", "data": {"row": "$r", "x": "$r.x"}}
$$;
SELECT call_record(ROW(1, 2)::call_point);
SELECT call_record(ROW(1, 2));
CREATE FUNCTION call_variadic(VARIADIC words text[]) RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "call:variadic", "data": "$words"}
$$;
SELECT call_variadic('a', 'b', 'c');

-- errors at call time
SELECT call_channels(NULL, NULL);
CREATE FUNCTION call_bad_channel(name text) RETURNS void LANGUAGE plcomet AS $$
{"channel": "call:${name}", "data": 1}
$$;
SELECT call_bad_channel(repeat('x', 60));
SELECT call_bad_channel(E'tab\there');
SELECT call_list(ARRAY['ok', NULL], 'null element');
SELECT call_list(ARRAY['call:list:c', ''], 'one bad name sends nothing');
SELECT count(*) FROM comet.packets WHERE channel = 'call:list:c';
CREATE FUNCTION call_object_channel(j jsonb) RETURNS void LANGUAGE plcomet AS $$
{"channel": "$j", "data": 1}
$$;
SELECT call_object_channel('{"a": 1}');
SELECT call_object_channel('true');
SELECT call_record(ROW(1, 2, 3));
SELECT call_text('x', 1, NULL, NULL);

-- a call that, while it renders, replaces its own function (a cast to json
-- that runs SQL) finishes with the version it started with
CREATE TYPE call_mood AS ENUM ('happy', 'sad');
CREATE FUNCTION call_mood_json(m call_mood) RETURNS json LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE 'CREATE OR REPLACE FUNCTION call_reentrant(m call_mood) RETURNS jsonb '
         || 'LANGUAGE plcomet AS '
         || quote_literal('{"channel": "call:reentrant", "data": {"replaced": true, "m": "$m"}}');
    RETURN to_json(m::text);
END $f$;
CREATE CAST (call_mood AS json) WITH FUNCTION call_mood_json(call_mood);
CREATE FUNCTION call_reentrant(m call_mood) RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "call:reentrant", "data": {"first": "$m", "second": "$m", "third": "${m}"}}
$$;
SELECT call_reentrant('happy');
SELECT call_reentrant('sad');

-- the packet is sent when the transaction commits, as with comet.send
BEGIN;
SELECT call_channels(8, NULL);
ROLLBACK;
SELECT count(*) FROM comet.packets WHERE channel = 'call:grid:8';
