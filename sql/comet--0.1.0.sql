-- comet 0.1.0: durable packets for browsers, access control, and plcomet.
-- Loaded by CREATE EXTENSION comet (schema comet).  See docs/sql.md.

\echo Use "CREATE EXTENSION comet" to load this file. \quit

-- Everyone may see the names in the schema; every function below is
-- revoked from PUBLIC at the end and granted role by role (docs/sql.md).
GRANT USAGE ON SCHEMA comet TO PUBLIC;

------------------------------------------------------------------------------
-- Storage
------------------------------------------------------------------------------

-- Durable packets, kept for comet.retention.  Rows are written only at
-- commit, by the send path in the extension's C code, with their seq.
CREATE TABLE comet.packets (
    channel  text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL,
    data     jsonb NOT NULL,
    sent_at  timestamptz NOT NULL,
    PRIMARY KEY (channel, seq)
);
CREATE INDEX packets_sent_at_idx ON comet.packets USING brin (sent_at);

-- The highest seq comet.prune removed from a channel, so that numbering
-- continues after every packet of a channel has been pruned.
CREATE TABLE comet.channels (
    channel      text COLLATE "C" PRIMARY KEY,
    pruned_upto  bigint NOT NULL
);

-- Who may subscribe to or publish on which channels.  subject NULL means
-- anyone, anonymous clients included.  channel_pattern is a LIKE pattern.
CREATE TABLE comet.grants (
    channel_pattern  text NOT NULL,
    action           text NOT NULL CHECK (action IN ('subscribe', 'publish')),
    subject          text,
    granted_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE NULLS NOT DISTINCT (channel_pattern, action, subject)
);

-- Access tokens: only the SHA-256 of each token is kept.
CREATE TABLE comet.tokens (
    token_hash  bytea PRIMARY KEY,
    subject     text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX tokens_expires_at_idx ON comet.tokens (expires_at);

SELECT pg_catalog.pg_extension_config_dump('comet.packets', '');
SELECT pg_catalog.pg_extension_config_dump('comet.channels', '');
SELECT pg_catalog.pg_extension_config_dump('comet.grants', '');
SELECT pg_catalog.pg_extension_config_dump('comet.tokens', '');

------------------------------------------------------------------------------
-- Internal helpers (C)
------------------------------------------------------------------------------

CREATE FUNCTION comet._check_channel(channel text) RETURNS void
    AS 'MODULE_PATHNAME', 'comet_check_channel'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION comet._random_token() RETURNS text
    AS 'MODULE_PATHNAME', 'comet_random_token'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE FUNCTION comet._retention() RETURNS interval
    AS 'MODULE_PATHNAME', 'comet_retention'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;

------------------------------------------------------------------------------
-- Sending and catching up
------------------------------------------------------------------------------

CREATE FUNCTION comet.send(channel text, data jsonb) RETURNS void
    AS 'MODULE_PATHNAME', 'comet_send'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION comet.send(text, jsonb) IS
    'send a durable packet to a channel when the transaction commits';

CREATE FUNCTION comet.last_seq(channel text) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM comet._check_channel(last_seq.channel);
    RETURN coalesce(
        (SELECT max(p.seq) FROM comet.packets p WHERE p.channel = last_seq.channel),
        (SELECT c.pruned_upto FROM comet.channels c WHERE c.channel = last_seq.channel),
        0);
END
$$;
COMMENT ON FUNCTION comet.last_seq(text) IS
    'the seq of the last durable packet committed on a channel (0 if none)';

CREATE FUNCTION comet.replay(channel text, after_seq bigint DEFAULT 0,
                             max_packets integer DEFAULT NULL)
    RETURNS TABLE (seq bigint, data jsonb, sent_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM comet._check_channel(replay.channel);
    IF replay.after_seq IS NULL THEN
        RAISE EXCEPTION 'after_seq must not be null' USING ERRCODE = '22004';
    END IF;
    IF replay.after_seq < 0 THEN
        RAISE EXCEPTION 'after_seq must not be negative'
            USING ERRCODE = '22023', HINT = 'Seqs start at 1; 0 replays from the beginning.';
    END IF;
    IF replay.max_packets < 0 THEN
        RAISE EXCEPTION 'max_packets must not be negative' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
        SELECT p.seq, p.data, p.sent_at
          FROM comet.packets p
         WHERE p.channel = replay.channel AND p.seq > replay.after_seq
         ORDER BY p.seq
         LIMIT replay.max_packets;
END
$$;
COMMENT ON FUNCTION comet.replay(text, bigint, integer) IS
    'the kept packets of a channel after a seq, in seq order';

CREATE FUNCTION comet.prune(keep interval DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    IF keep IS NULL THEN
        keep := comet._retention();
    END IF;
    IF prune.keep < interval '0' THEN
        RAISE EXCEPTION 'keep must not be negative' USING ERRCODE = '22023';
    END IF;
    -- Only whole prefixes of a channel go: everything up to its newest
    -- packet older than keep.  (sent_at follows seq within a channel unless
    -- the clock steps back; a prefix keeps replay free of holes regardless.)
    WITH cut AS (
        SELECT p.channel, max(p.seq) AS upto
          FROM comet.packets p
         WHERE p.sent_at < now() - prune.keep
         GROUP BY p.channel
    ), gone AS (
        DELETE FROM comet.packets p
         USING cut
         WHERE p.channel = cut.channel AND p.seq <= cut.upto
        RETURNING p.channel, p.seq
    ), per_channel AS (
        SELECT g.channel, max(g.seq) AS upto, count(*) AS n
          FROM gone g GROUP BY g.channel
    ), marked AS (
        INSERT INTO comet.channels AS c (channel, pruned_upto)
        SELECT pc.channel, pc.upto FROM per_channel pc
        ON CONFLICT (channel) DO UPDATE
            SET pruned_upto = greatest(c.pruned_upto, excluded.pruned_upto)
    )
    SELECT coalesce(sum(pc.n), 0) INTO removed FROM per_channel pc;
    DELETE FROM comet.tokens t WHERE t.expires_at < now();
    RETURN removed;
END
$$;
COMMENT ON FUNCTION comet.prune(interval) IS
    'remove packets older than keep (default: comet.retention) and expired tokens';

------------------------------------------------------------------------------
-- Access control and identity
------------------------------------------------------------------------------

CREATE FUNCTION comet._check_actions(actions text[]) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a text;
BEGIN
    IF actions IS NULL OR cardinality(actions) = 0 THEN
        RAISE EXCEPTION 'actions must list at least one action'
            USING ERRCODE = '22023', HINT = 'The actions are subscribe and publish.';
    END IF;
    FOREACH a IN ARRAY actions LOOP
        IF a IS NULL OR a NOT IN ('subscribe', 'publish') THEN
            RAISE EXCEPTION 'unknown action "%"', coalesce(a, 'NULL')
                USING ERRCODE = '22023', HINT = 'The actions are subscribe and publish.';
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION comet._check_pattern(channel_pattern text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF channel_pattern IS NULL THEN
        RAISE EXCEPTION 'channel_pattern must not be null'
            USING ERRCODE = '22004', HINT = 'Use ''%'' for every channel.';
    END IF;
    IF channel_pattern = '' OR octet_length(channel_pattern) > 255 THEN
        RAISE EXCEPTION 'invalid channel pattern "%"', channel_pattern
            USING ERRCODE = '22023',
                  DETAIL = 'A channel pattern is a LIKE pattern of 1 to 255 bytes.';
    END IF;
END
$$;

CREATE FUNCTION comet.grant(channel_pattern text, actions text[],
                            subject text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- $1 channel_pattern, $2 actions, $3 subject ("grant" is a keyword)
    PERFORM comet._check_pattern($1);
    PERFORM comet._check_actions($2);
    IF $3 = '' THEN
        RAISE EXCEPTION 'subject must not be empty'
            USING ERRCODE = '22023', HINT = 'A NULL subject grants to anyone.';
    END IF;
    INSERT INTO comet.grants (channel_pattern, action, subject)
    SELECT $1, a, $3
      FROM unnest($2) AS a
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION comet.grant(text, text[], text) IS
    'allow a subject (NULL: anyone) to subscribe to or publish on channels matching a LIKE pattern';

CREATE FUNCTION comet.revoke(channel_pattern text,
                             actions text[] DEFAULT ARRAY['subscribe', 'publish'],
                             subject text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM comet._check_pattern(revoke.channel_pattern);
    PERFORM comet._check_actions(revoke.actions);
    DELETE FROM comet.grants g
     WHERE g.channel_pattern = revoke.channel_pattern
       AND g.action = ANY (revoke.actions)
       AND g.subject IS NOT DISTINCT FROM revoke.subject;
END
$$;
COMMENT ON FUNCTION comet.revoke(text, text[], text) IS
    'remove grants made with comet.grant (same pattern and subject)';

CREATE FUNCTION comet.authorize(subject text, channel text, action text)
    RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM comet._check_channel(authorize.channel);
    PERFORM comet._check_actions(ARRAY[authorize.action]);
    RETURN EXISTS (
        SELECT 1 FROM comet.grants g
         WHERE g.action = authorize.action
           AND authorize.channel LIKE g.channel_pattern
           AND (g.subject IS NULL OR g.subject = authorize.subject));
END
$$;
COMMENT ON FUNCTION comet.authorize(text, text, text) IS
    'may this subject (NULL: anonymous) subscribe to or publish on this channel?';

CREATE FUNCTION comet.issue_token(subject text, ttl interval DEFAULT interval '1 day')
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text;
BEGIN
    IF issue_token.subject IS NULL OR issue_token.subject = '' THEN
        RAISE EXCEPTION 'subject must not be null or empty' USING ERRCODE = '22023';
    END IF;
    IF issue_token.ttl IS NULL OR issue_token.ttl <= interval '0' THEN
        RAISE EXCEPTION 'ttl must be a positive interval' USING ERRCODE = '22023';
    END IF;
    token := comet._random_token();
    INSERT INTO comet.tokens (token_hash, subject, expires_at)
    VALUES (sha256(convert_to(token, 'UTF8')), issue_token.subject,
            clock_timestamp() + issue_token.ttl);
    RETURN token;
END
$$;
COMMENT ON FUNCTION comet.issue_token(text, interval) IS
    'a new random access token for a subject; only its hash is stored';

CREATE FUNCTION comet.revoke_token(token text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM comet.tokens t
     WHERE t.token_hash = sha256(convert_to(coalesce(revoke_token.token, ''), 'UTF8'));
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION comet.revoke_token(text) IS
    'make a token stop working; true if it existed';

CREATE FUNCTION comet.authenticate(auth jsonb) RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token jsonb;
    found_subject text;
BEGIN
    IF auth IS NULL OR jsonb_typeof(auth) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(auth) <> 'object' THEN
        RAISE EXCEPTION 'auth must be a JSON object'
            USING ERRCODE = '28000', HINT = 'Send {"token": "..."}, or no auth to be anonymous.';
    END IF;
    token := auth -> 'token';
    IF token IS NULL OR jsonb_typeof(token) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(token) <> 'string' THEN
        RAISE EXCEPTION 'token must be a string' USING ERRCODE = '28000';
    END IF;
    SELECT t.subject INTO found_subject
      FROM comet.tokens t
     WHERE t.token_hash = sha256(convert_to(token #>> '{}', 'UTF8'))
       AND t.expires_at > clock_timestamp();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid or expired token' USING ERRCODE = '28000';
    END IF;
    RETURN found_subject;
END
$$;
COMMENT ON FUNCTION comet.authenticate(jsonb) IS
    'the subject of a client''s auth object: {"token": ...}; NULL for anonymous';

CREATE FUNCTION comet.receive(subject text, sid text, channel text, data jsonb)
    RETURNS void
    LANGUAGE sql VOLATILE
AS $$ SELECT comet.send(channel, data) $$;
COMMENT ON FUNCTION comet.receive(text, text, text, jsonb) IS
    'what the bridge does with a message from a client: by default, send it on';

------------------------------------------------------------------------------
-- plcomet
------------------------------------------------------------------------------

CREATE FUNCTION comet.plcomet_call_handler() RETURNS language_handler
    AS 'MODULE_PATHNAME', 'plcomet_call_handler' LANGUAGE C;
CREATE FUNCTION comet.plcomet_inline_handler(internal) RETURNS void
    AS 'MODULE_PATHNAME', 'plcomet_inline_handler' LANGUAGE C STRICT;
CREATE FUNCTION comet.plcomet_validator(oid) RETURNS void
    AS 'MODULE_PATHNAME', 'plcomet_validator' LANGUAGE C STRICT;

CREATE TRUSTED LANGUAGE plcomet
    HANDLER comet.plcomet_call_handler
    INLINE comet.plcomet_inline_handler
    VALIDATOR comet.plcomet_validator;
COMMENT ON LANGUAGE plcomet IS 'packet templates that send comet packets';

------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; grant what each role needs.
------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA comet FROM PUBLIC;
