-- The validator refuses bad plcomet functions at CREATE time, saying what is
-- wrong and where; it honours check_function_bodies = off.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

-- invalid JSON, with the position of the problem
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": {"a": 1,}}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": [1 2]}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "unterminated}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "bad \q escape"}
$$;
-- jsonb cannot hold \u0000 or a lone surrogate: refused at CREATE, not at every call
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "nul \u0000 here"}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "half \ud83d a pair"}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": 01}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": tru}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": 1} trailing
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$ $$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$ ["channel", "data"] $$;

-- the body's members
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v"}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": 1, "chanel": "w"}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": 1, "channel": "w"}
$$;

-- references
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": {"a": "$a", "b": "$b"}}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "$2"}
$$;
CREATE FUNCTION v_bad(int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "$0"}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v-${b}", "data": 1}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "costs $a dollars"}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "costs 5$"}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "${a"}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "${}"}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "$a.field"}
$$;
CREATE FUNCTION v_bad(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "$NEW"}
$$;

-- channels given literally are checked
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "", "data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": "a-channel-name-that-is-far-too-long-to-be-a-notify-channel-name!", "data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": ["ok", "tab\there"], "data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": {"name": "v"}, "data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": 42, "data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS void LANGUAGE plcomet AS $$
{"channel": [["nested"]], "data": 1}
$$;

-- signatures
CREATE FUNCTION v_bad() RETURNS integer LANGUAGE plcomet AS $$
{"channel": "v", "data": 1}
$$;
CREATE FUNCTION v_bad() RETURNS SETOF jsonb LANGUAGE plcomet AS $$
{"channel": "v", "data": 1}
$$;
CREATE FUNCTION v_bad(OUT x int) LANGUAGE plcomet AS $$
{"channel": "v", "data": 1}
$$;
CREATE FUNCTION v_bad(x anyelement) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "$x"}
$$;
CREATE FUNCTION v_bad() RETURNS event_trigger LANGUAGE plcomet AS $$
{"channel": "v", "data": 1}
$$;

-- trigger functions
CREATE FUNCTION v_bad() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "v", "data": "$NEW.id $OLD"}
$$;
CREATE FUNCTION v_bad() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "v", "data": "$x"}
$$;
CREATE FUNCTION v_bad() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "v", "data": "$TG_OP.name"}
$$;

-- none of them was created
SELECT count(*) FROM pg_proc WHERE proname = 'v_bad';

-- check_function_bodies = off: the body is checked at the first call instead
SET check_function_bodies = off;
CREATE FUNCTION v_late(a int) RETURNS void LANGUAGE plcomet AS $$
{"channel": "v", "data": "$b"}
$$;
-- but the signature is always checked
CREATE FUNCTION v_late_type() RETURNS text LANGUAGE plcomet AS $$ not even json $$;
RESET check_function_bodies;
SELECT v_late(1);

-- a good function, replaced: the new body takes effect at once
CREATE FUNCTION v_good(a int) RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "v", "data": {"version": 1, "a": "$a"}}
$$;
SELECT v_good(1);
CREATE OR REPLACE FUNCTION v_good(a int) RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "v", "data": {"version": 2, "a": "$a"}}
$$;
SELECT v_good(1);
-- replacing it with a bad body fails and keeps the old one
CREATE OR REPLACE FUNCTION v_good(a int) RETURNS jsonb LANGUAGE plcomet AS $$
{"channel": "v", "data": {"version": 3, "a": "$c"}}
$$;
SELECT v_good(1);
