-- DO LANGUAGE plcomet runs a template once.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

DO LANGUAGE plcomet $do$ {"channel": "do:a", "data": {"from": "a DO block", "cost": "$$5"}} $do$;
DO LANGUAGE plcomet $$ {"channel": ["do:a", "do:b"], "data": [1, 2, 3]} $$;
SELECT channel, seq, data FROM comet.packets WHERE channel LIKE 'do:%' ORDER BY 1, 2;

-- it is transactional too
BEGIN;
DO LANGUAGE plcomet $$ {"channel": "do:a", "data": "rolled back"} $$;
ROLLBACK;
SELECT count(*) FROM comet.packets WHERE channel = 'do:a';

-- errors point into the block
DO LANGUAGE plcomet $$ {"channel": "do:a", "data": "$1"} $$;
DO LANGUAGE plcomet $$ {"channel": "do:a", "data": "$x"} $$;
DO LANGUAGE plcomet $$ {"channel": "do:a", "data": [1,, 2]} $$;
DO LANGUAGE plcomet $$ {"channel": "", "data": 1} $$;
DO LANGUAGE plcomet $$ {"data": 1} $$;
