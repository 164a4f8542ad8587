-- Tokens: random, stored only as a hash, expire, can be revoked;
-- comet.authenticate turns an auth object into a subject.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

CREATE TEMP TABLE issued AS
    SELECT comet.issue_token('alice', interval '1 hour') AS token;
-- 256 random bits in URL-safe base64
SELECT length(token), token ~ '^[A-Za-z0-9_-]{43}$' AS url_safe FROM issued;
-- the token itself is stored nowhere; its SHA-256 is
SELECT count(*) AS rows_with_token_text
  FROM comet.tokens t, issued i
 WHERE position(convert_to(i.token, 'UTF8') IN t.token_hash) > 0
    OR t.subject = i.token;
SELECT t.subject, t.expires_at > now() AS valid
  FROM comet.tokens t JOIN issued i ON t.token_hash = sha256(convert_to(i.token, 'UTF8'));
-- two tokens are never the same
SELECT comet.issue_token('alice') <> comet.issue_token('alice') AS distinct_tokens;

-- authenticate
SELECT comet.authenticate(jsonb_build_object('token', token)) FROM issued;
SELECT comet.authenticate(NULL) IS NULL AS anonymous,
       comet.authenticate('null') IS NULL AS anonymous_json_null,
       comet.authenticate('{}') IS NULL AS anonymous_no_token;
SELECT comet.authenticate('{"token": "not-a-token"}');
SELECT comet.authenticate('{"token": 42}');
SELECT comet.authenticate('"just a string"');
SELECT comet.authenticate('[1]');

-- expiry
CREATE TEMP TABLE short AS SELECT comet.issue_token('bob', interval '1 millisecond') AS token;
SELECT pg_sleep(0.01);
SELECT comet.authenticate(jsonb_build_object('token', token)) FROM short;

-- revocation
SELECT comet.revoke_token(token) FROM issued;
SELECT comet.revoke_token(token) FROM issued;
SELECT comet.authenticate(jsonb_build_object('token', token)) FROM issued;
SELECT comet.revoke_token(NULL);

-- prune removes expired tokens
SELECT count(*) > 0 AS expired_before FROM comet.tokens WHERE expires_at < now();
SELECT comet.prune() >= 0;
SELECT count(*) AS expired_after FROM comet.tokens WHERE expires_at < now();

-- bad input
SELECT comet.issue_token(NULL);
SELECT comet.issue_token('');
SELECT comet.issue_token('carol', interval '0');
SELECT comet.issue_token('carol', interval '-1 day');
SELECT comet.issue_token('carol', NULL);
