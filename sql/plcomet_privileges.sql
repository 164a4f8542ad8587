-- plcomet is trusted, and a plcomet function can send only what its caller
-- could send with comet.send: EXECUTE on comet.send is required.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS comet;
RESET client_min_messages;

CREATE ROLE regress_comet_sender;
CREATE ROLE regress_comet_outsider;
CREATE SCHEMA priv;
GRANT USAGE, CREATE ON SCHEMA priv TO regress_comet_sender, regress_comet_outsider;
GRANT EXECUTE ON FUNCTION comet.send(text, jsonb) TO regress_comet_sender;

CREATE FUNCTION priv.announce(msg text) RETURNS void LANGUAGE plcomet AS $$
{"channel": "priv:news", "data": "$msg"}
$$;
GRANT EXECUTE ON FUNCTION priv.announce(text) TO PUBLIC;

-- a role with EXECUTE on comet.send may send both ways
SET ROLE regress_comet_sender;
SELECT comet.send('priv:news', '"by comet.send"');
SELECT priv.announce('by plcomet');
-- a trusted language: an ordinary role may create plcomet functions
CREATE FUNCTION priv.own(msg text) RETURNS void LANGUAGE plcomet AS $$
{"channel": "priv:own", "data": "$msg"}
$$;
SELECT priv.own('from my own function');
-- but may not read the packets table directly
SELECT count(*) FROM comet.packets;
RESET ROLE;

-- a role without it can do neither
SET ROLE regress_comet_outsider;
SELECT comet.send('priv:news', '"sneaky"');
SELECT priv.announce('sneaky');
SELECT priv.own('sneaky');
DO LANGUAGE plcomet $$ {"channel": "priv:news", "data": "sneaky"} $$;
RESET ROLE;

-- a SECURITY DEFINER plcomet function sends with its owner's rights
ALTER FUNCTION priv.announce(text) SECURITY DEFINER;
SET ROLE regress_comet_outsider;
SELECT priv.announce('through a definer function');
RESET ROLE;

SELECT channel, seq, data FROM comet.packets WHERE channel LIKE 'priv:%' ORDER BY 1, 2;

-- revoking takes effect at once
REVOKE EXECUTE ON FUNCTION comet.send(text, jsonb) FROM regress_comet_sender;
SET ROLE regress_comet_sender;
SELECT priv.own('after revoke');
RESET ROLE;

DROP SCHEMA priv CASCADE;
DROP ROLE regress_comet_sender;
DROP ROLE regress_comet_outsider;
