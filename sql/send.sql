-- comet.send: durable, transactional, numbered per channel.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

CREATE VIEW send_packets AS
    SELECT channel, seq, data FROM comet.packets
     WHERE channel LIKE 'send:%' ORDER BY channel, seq;

-- seqs start at 1 in each channel and follow send order within a transaction
SELECT comet.send('send:a', '{"n": 1}');
BEGIN;
SELECT comet.send('send:a', '{"n": 2}');
SELECT comet.send('send:b', '{"n": 3}');
SELECT comet.send('send:a', '{"n": 4}');
-- nothing is stored before commit
SELECT count(*) FROM comet.packets WHERE channel LIKE 'send:%';
COMMIT;
SELECT * FROM send_packets;

-- a rolled-back transaction sends nothing and uses no seq
BEGIN;
SELECT comet.send('send:a', '"rolled back"');
ROLLBACK;
SELECT comet.send('send:a', '"after rollback"');
SELECT * FROM send_packets WHERE channel = 'send:a';

-- savepoints: a rolled-back savepoint drops its packets only
BEGIN;
SELECT comet.send('send:c', '"kept 1"');
SAVEPOINT s1;
SELECT comet.send('send:c', '"dropped"');
SAVEPOINT s2;
SELECT comet.send('send:c', '"dropped too"');
RELEASE SAVEPOINT s2;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s3;
SELECT comet.send('send:c', '"kept 2"');
RELEASE SAVEPOINT s3;
COMMIT;
SELECT * FROM send_packets WHERE channel = 'send:c';

-- an error caught in PL/pgSQL rolls back that block's packets
DO $$
BEGIN
    PERFORM comet.send('send:d', '"kept"');
    BEGIN
        PERFORM comet.send('send:d', '"dropped by the exception"');
        RAISE EXCEPTION 'boom';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;
SELECT * FROM send_packets WHERE channel = 'send:d';

-- a failed commit sends nothing
CREATE TABLE send_deferred (id int PRIMARY KEY,
    parent int REFERENCES send_deferred DEFERRABLE INITIALLY DEFERRED);
BEGIN;
SELECT comet.send('send:e', '"never"');
INSERT INTO send_deferred VALUES (1, 42);
COMMIT;
SELECT count(*) FROM comet.packets WHERE channel = 'send:e';

-- packets sent by deferred triggers at commit are sent too
CREATE FUNCTION send_from_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM comet.send('send:f', jsonb_build_object('id', NEW.id));
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER send_at_commit AFTER INSERT ON send_deferred
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION send_from_trigger();
INSERT INTO send_deferred VALUES (7, NULL);
SELECT * FROM send_packets WHERE channel = 'send:f';

-- a procedure that commits seals what it sent so far
CREATE PROCEDURE send_twice() LANGUAGE plpgsql AS $$
BEGIN
    PERFORM comet.send('send:g', '"first"');
    COMMIT;
    PERFORM comet.send('send:g', '"second"');
    ROLLBACK;
    PERFORM comet.send('send:g', '"third"');
END $$;
CALL send_twice();
SELECT * FROM send_packets WHERE channel = 'send:g';

-- any JSON value is a packet: scalars, arrays, Unicode
SELECT comet.send('send:h', 'null');
SELECT comet.send('send:h', '"Grüße, 你好, 👋🏽"');
SELECT comet.send('send:h', '[1, 2.5, true, {"a": []}]');
SELECT * FROM send_packets WHERE channel = 'send:h';

-- 1 MiB and more: far past NOTIFY's 8000-byte limit
SELECT comet.send('send:big', jsonb_build_object('blob', repeat('x', 1024 * 1024)));
SELECT seq, length(data ->> 'blob') FROM comet.packets WHERE channel = 'send:big';

-- many packets in one transaction
SELECT count(*) FROM (SELECT comet.send('send:many', to_jsonb(i)) FROM generate_series(1, 1000) i) s;
SELECT count(*), min(seq), max(seq), bool_and(seq = (data #>> '{}')::int)
  FROM comet.packets WHERE channel = 'send:many';

-- sent_at is set when the packet is committed
SELECT bool_and(sent_at <= now() + interval '1 minute' AND sent_at > now() - interval '1 hour')
  FROM comet.packets WHERE channel LIKE 'send:%';

-- a transaction may send to any number of channels (locks are striped)
SELECT count(*) FROM (SELECT comet.send('send:fan:' || i, '"fan-out"')
                        FROM generate_series(1, 20000) i) s;
SELECT count(*), count(DISTINCT channel), max(seq)
  FROM comet.packets WHERE channel LIKE 'send:fan:%';

-- bad input
SELECT comet.send(NULL, '{}');
SELECT comet.send('send:a', NULL);
BEGIN TRANSACTION READ ONLY;
SELECT comet.send('send:a', '1');
ROLLBACK;
BEGIN;
SELECT comet.send('send:a', '"read only after all"');
SET TRANSACTION READ ONLY;
COMMIT;
SELECT count(*) FROM comet.packets WHERE data = '"read only after all"';
BEGIN;
SELECT comet.send('send:a', '"prepared"');
PREPARE TRANSACTION 'send_prepared';
SELECT count(*) FROM comet.packets WHERE data = '"prepared"';
