-- plcomet trigger functions: $NEW, $OLD, fields, TG_ variables; BEFORE row
-- triggers leave the row as it is, statement triggers work too.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

CREATE TABLE trig_token (id int PRIMARY KEY, grid int, name text, x int, y int);

CREATE FUNCTION trig_token_changed() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "trig:grid:${NEW.grid}",
 "data": {"op": "$TG_OP", "token": "$NEW", "old_x": "$OLD.x", "name": "${NEW.name}",
          "table": "${TG_TABLE_SCHEMA}.${TG_TABLE_NAME}", "when": "$TG_WHEN",
          "level": "$TG_LEVEL", "trigger": "$TG_NAME", "args": "$TG_ARGV"}}
$$;
CREATE TRIGGER token_after AFTER INSERT OR UPDATE ON trig_token
    FOR EACH ROW EXECUTE FUNCTION trig_token_changed('a', 'b');

INSERT INTO trig_token VALUES (1, 5, 'orc', 0, 0);
UPDATE trig_token SET x = 3 WHERE id = 1;
SELECT seq, jsonb_pretty(data) FROM comet.replay('trig:grid:5');

-- DELETE: $OLD; the channel comes from the old row
CREATE FUNCTION trig_token_deleted() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "trig:grid:${OLD.grid}", "data": {"op": "$TG_OP", "gone": "$OLD.id", "new": "$NEW"}}
$$;
CREATE TRIGGER token_deleted AFTER DELETE ON trig_token
    FOR EACH ROW EXECUTE FUNCTION trig_token_deleted();
DELETE FROM trig_token WHERE id = 1;
SELECT seq, data FROM comet.replay('trig:grid:5', 2);

-- BEFORE row triggers return the row unchanged, so the statement goes ahead
CREATE TABLE trig_before (id int PRIMARY KEY, v text);
CREATE FUNCTION trig_before_fn() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "trig:before", "data": {"op": "$TG_OP", "new": "$NEW.v", "old": "$OLD.v"}}
$$;
CREATE TRIGGER before_all BEFORE INSERT OR UPDATE OR DELETE ON trig_before
    FOR EACH ROW EXECUTE FUNCTION trig_before_fn();
INSERT INTO trig_before VALUES (1, 'one'), (2, 'two');
UPDATE trig_before SET v = 'uno' WHERE id = 1;
DELETE FROM trig_before WHERE id = 2;
SELECT * FROM trig_before;
SELECT seq, data FROM comet.replay('trig:before');

-- statement-level triggers: no rows, the TG_ variables still work
CREATE FUNCTION trig_statement_fn() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "trig:statement", "data": {"op": "$TG_OP", "level": "$TG_LEVEL", "new": "$NEW", "old_id": "$OLD.id"}}
$$;
CREATE TRIGGER statement_after AFTER INSERT OR TRUNCATE ON trig_before
    FOR EACH STATEMENT EXECUTE FUNCTION trig_statement_fn();
INSERT INTO trig_before VALUES (3, 'three');
TRUNCATE trig_before;
SELECT seq, data FROM comet.replay('trig:statement');

-- INSTEAD OF triggers on views: the row counts as handled
CREATE VIEW trig_view AS SELECT 1 AS id, 'v'::text AS label;
CREATE FUNCTION trig_instead_fn() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "trig:view", "data": {"op": "$TG_OP", "when": "$TG_WHEN", "label": "$NEW.label"}}
$$;
CREATE TRIGGER view_instead INSTEAD OF INSERT ON trig_view
    FOR EACH ROW EXECUTE FUNCTION trig_instead_fn();
INSERT INTO trig_view VALUES (2, 'inserted through the view') RETURNING *;
SELECT seq, data FROM comet.replay('trig:view');

-- errors: an unknown column, a null channel part, a direct call
CREATE FUNCTION trig_bad_column() RETURNS trigger LANGUAGE plcomet AS $$
{"channel": "trig:bad", "data": "$NEW.no_such_column"}
$$;
CREATE TABLE trig_bad (id int);
CREATE TRIGGER bad_column AFTER INSERT ON trig_bad
    FOR EACH ROW EXECUTE FUNCTION trig_bad_column();
INSERT INTO trig_bad VALUES (1);
DROP TRIGGER bad_column ON trig_bad;
CREATE TRIGGER null_channel AFTER INSERT ON trig_token
    FOR EACH ROW EXECUTE FUNCTION trig_token_deleted();
INSERT INTO trig_token VALUES (9, 1, 'x', 0, 0);
SELECT trig_token_changed();
SELECT count(*) FROM trig_token;
