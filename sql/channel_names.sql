-- Channel names are 1 to 63 bytes without control characters, everywhere.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

-- valid: up to 63 bytes, any printable characters, multibyte counted in bytes
SELECT comet.send(repeat('n', 63), '1');
SELECT comet.send(repeat('é', 31), '1');  -- 62 bytes
SELECT comet.send('grid:1 "quoted" \ back; DROP TABLE x; --', '1');
SELECT channel, octet_length(channel) FROM comet.packets
 WHERE channel IN (repeat('n', 63), repeat('é', 31), 'grid:1 "quoted" \ back; DROP TABLE x; --')
 ORDER BY 2, 1;

-- invalid
SELECT comet.send('', '1');
SELECT comet.send(repeat('n', 64), '1');
SELECT comet.send(repeat('é', 32), '1');  -- 64 bytes
SELECT comet.send(E'tab\there', '1');
SELECT comet.send(E'new\nline', '1');
SELECT comet.send(E'del\x7f', '1');
SELECT comet.send(NULL, '1');

-- the same rules in the other functions that take a channel
SELECT * FROM comet.replay('');
SELECT comet.last_seq(repeat('n', 64));
SELECT comet.authorize(NULL, E'a\tb', 'subscribe');
SELECT * FROM comet.replay(NULL);
