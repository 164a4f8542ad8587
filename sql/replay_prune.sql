-- comet.replay lists what is kept; comet.prune removes what is older than
-- the retention, and numbering carries on after a channel is emptied.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

SELECT comet.send('replay:a', to_jsonb(i)) FROM generate_series(1, 5) i;
SELECT seq, data FROM comet.replay('replay:a');
SELECT seq, data FROM comet.replay('replay:a', 3);
SELECT seq, data FROM comet.replay('replay:a', after_seq => 1, max_packets => 2);
SELECT seq, data FROM comet.replay('replay:a', 5);
SELECT seq, data FROM comet.replay('replay:unknown');
SELECT comet.last_seq('replay:a'), comet.last_seq('replay:unknown');

-- bad arguments
SELECT * FROM comet.replay('replay:a', NULL);
SELECT * FROM comet.replay('replay:a', -1);
SELECT * FROM comet.replay('replay:a', 0, -1);

-- the retention setting
SHOW comet.retention;
SET comet.retention = '2 hours';
SHOW comet.retention;
SET comet.retention = 'PT30M';
SET comet.retention = 'forever';
SET comet.retention = '-1 hour';
SHOW comet.retention;
RESET comet.retention;

-- age the first three packets past the retention period
UPDATE comet.packets SET sent_at = now() - interval '2 hours'
 WHERE channel = 'replay:a' AND seq <= 3;
SELECT comet.prune();
SELECT seq FROM comet.replay('replay:a');
-- a shorter keep removes more
UPDATE comet.packets SET sent_at = now() - interval '10 minutes' WHERE channel = 'replay:a';
SELECT comet.prune(interval '1 hour');
SELECT comet.prune(interval '5 minutes');
SELECT seq FROM comet.replay('replay:a');
-- the channel is empty, yet its last seq is remembered and numbering goes on
SELECT comet.last_seq('replay:a');
SELECT comet.send('replay:a', '"six"');
SELECT seq, data FROM comet.replay('replay:a');
-- prune removes whole prefixes only: an old packet after a newer one
-- takes the ones before it along, so replay never shows a hole
SELECT comet.send('replay:b', to_jsonb(i)) FROM generate_series(1, 4) i;
UPDATE comet.packets SET sent_at = now() - interval '2 hours'
 WHERE channel = 'replay:b' AND seq = 2;
SELECT comet.prune();
SELECT seq FROM comet.replay('replay:b');

SELECT comet.prune(interval '-1 second');
SELECT comet.prune(NULL);
