-- Access control: deny by default; grants by LIKE pattern, per action, to a
-- subject or to anyone (NULL); revoke undoes a grant.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;
DELETE FROM comet.grants;

-- nothing is allowed until granted
SELECT comet.authorize(NULL, 'news', 'subscribe');
SELECT comet.authorize('alice', 'news', 'publish');

-- a grant to anyone covers anonymous clients and every subject
SELECT comet.grant('news', ARRAY['subscribe']);
SELECT comet.authorize(NULL, 'news', 'subscribe'),
       comet.authorize('alice', 'news', 'subscribe'),
       comet.authorize('alice', 'news', 'publish'),
       comet.authorize(NULL, 'newsy', 'subscribe');

-- LIKE patterns, per subject
SELECT comet.grant('grid:%', ARRAY['subscribe', 'publish'], 'alice');
SELECT comet.grant('user:bob:_', ARRAY['subscribe'], 'bob');
SELECT subject, channel, action, comet.authorize(subject, channel, action) AS allowed
  FROM (VALUES ('alice', 'grid:1'), ('alice', 'grid:'), ('bob', 'grid:1'),
               (NULL, 'grid:1'), ('bob', 'user:bob:1'), ('bob', 'user:bob:12'),
               ('alice', 'user:bob:1'), ('bob', 'user:alice:1')) AS c(subject, channel),
       (VALUES ('subscribe'), ('publish')) AS a(action)
 ORDER BY 1, 2, 3;

-- a channel name full of pattern characters matches only what the pattern says
SELECT comet.grant('room:42', ARRAY['subscribe'], 'carol');
SELECT comet.authorize('carol', 'room:%', 'subscribe'),
       comet.authorize('carol', 'room:4_', 'subscribe'),
       comet.authorize('carol', 'room:42', 'subscribe');

-- granting twice is harmless
SELECT comet.grant('news', ARRAY['subscribe']);
SELECT channel_pattern, action, subject FROM comet.grants ORDER BY 1, 2, 3;

-- revoke: exactly the pattern, actions and subject named
SELECT comet.revoke('grid:%', ARRAY['publish'], 'alice');
SELECT comet.authorize('alice', 'grid:1', 'publish'), comet.authorize('alice', 'grid:1', 'subscribe');
SELECT comet.revoke('news');
SELECT comet.authorize(NULL, 'news', 'subscribe');
SELECT comet.revoke('nothing:like:this');
SELECT channel_pattern, action, subject FROM comet.grants ORDER BY 1, 2, 3;

-- bad input
SELECT comet.grant('x', ARRAY['read']);
SELECT comet.grant('x', ARRAY[]::text[]);
SELECT comet.grant('x', NULL);
SELECT comet.grant('x', ARRAY['subscribe', NULL]);
SELECT comet.grant(NULL, ARRAY['subscribe']);
SELECT comet.grant('', ARRAY['subscribe']);
SELECT comet.grant('x', ARRAY['subscribe'], '');
SELECT comet.authorize('alice', 'grid:1', 'read');
SELECT comet.authorize('alice', 'grid:1', NULL);
SELECT comet.authorize('alice', '', 'subscribe');
SELECT comet.revoke('x', ARRAY['write']);

-- the default receive function sends the message on
SELECT comet.receive('alice', 'sid-1', 'access:echo', '{"hi": 1}');
SELECT seq, data FROM comet.replay('access:echo');
