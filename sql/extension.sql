-- The extension installs, lists its objects, is locked down by default and
-- can be dropped and created again (also within one session).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS comet CASCADE;
RESET client_min_messages;
CREATE EXTENSION comet;

SELECT extversion FROM pg_extension WHERE extname = 'comet';
SELECT lanname, lanpltrusted, lanplcallfoid::regproc, laninline::regproc,
       lanvalidator::regproc
  FROM pg_language WHERE lanname = 'plcomet';

-- the public API
SELECT p.oid::regprocedure AS function
  FROM pg_proc p
 WHERE p.pronamespace = 'comet'::regnamespace AND p.proname !~ '^(_|plcomet_)'
 ORDER BY p.oid::regprocedure::text;

-- deny by default: PUBLIC may execute none of the functions and read no table
CREATE ROLE regress_nobody;
SELECT p.oid::regprocedure AS executable_by_anyone
  FROM pg_proc p
 WHERE p.pronamespace = 'comet'::regnamespace
   AND has_function_privilege('regress_nobody', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
SELECT c.relname AS readable_by_anyone
  FROM pg_class c
 WHERE c.relnamespace = 'comet'::regnamespace AND c.relkind = 'r'
   AND has_table_privilege('regress_nobody', c.oid, 'SELECT');
DROP ROLE regress_nobody;

-- the send path's prepared plans survive DROP and CREATE EXTENSION
SELECT comet.send('extension:a', '1');
SELECT seq, data FROM comet.replay('extension:a');
DROP EXTENSION comet;
SELECT lanname FROM pg_language WHERE lanname = 'plcomet';
CREATE EXTENSION comet;
SELECT comet.send('extension:a', '2');
SELECT seq, data FROM comet.replay('extension:a');

-- the setting exists once the library is loaded, with its default
SHOW comet.retention;
