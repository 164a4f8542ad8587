# 24-security.t — the security review, black-box over HTTP: channels are
# denied by default for subscribe and publish (and a refused channel is
# never LISTENed, resumed or delivered); a revoked or expired token stops
# working on the next request, also inside the session it opened; errors
# never leak SQL text, table names, SQLSTATEs or stack details (only RAISE's
# own message passes, without DETAIL, HINT or CONTEXT); CORS answers only
# the configured origins, exactly; and a subject cannot reach another
# subject's channels by pattern tricks (%, _, backslash escapes, case,
# spaces, JSON escapes) in channel names or in subject names.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use Test::More;
use CometTest;

my $true = JSON::PP::true;

sub q_literal { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

sub forbidden_result
{
	my ($json, $name) = @_;
	my $r = ref $json eq 'HASH' && ref $json->{results} eq 'ARRAY' ? $json->{results}[0] : undef;
	ok(ref $r eq 'HASH' && ($r->{error} // '') eq 'forbidden' && length($r->{message} // ''), $name)
		or diag(encode_json_canonical($json));
}

# ---- deny by default -------------------------------------------------------------

my $bridge = start_bridge(args => ['--wait', '10']);

subtest 'nothing is allowed until granted' => sub {
	is(sql('SELECT count(*) FROM comet.grants'), 0, 'no grant exists');
	my @names = ('secret', '%', '_', '*', 'a', 'comet', 'private:alice', "x'; --", 'public', '.*');
	for my $name (@names)
	{
		my $s = $bridge->setup(subscribe => [$name]);
		is($s->status, 403, "subscribing to '$name' at setup: 403");
		is($s->response->{error}, 'forbidden', 'forbidden');
		ok(!defined $s->sid, 'and no session');
	}
	my $s = $bridge->setup(subscribe => [], wait => 1);
	is($s->status, 200, 'a session that subscribes to nothing may start') or return;
	for my $name (@names)
	{
		my ($status, undef, $json) = $s->request(subscribe => [$name]);
		forbidden_result($json, "subscribing to '$name' later: forbidden");
		($status, undef, $json) = $s->request(send => [ { channel => $name, data => 'x' } ]);
		forbidden_result($json, "publishing on '$name': forbidden");
		($status, undef, $json) = $s->request(subscribe => [$name], resume => { $name => 0 });
		forbidden_result($json, "subscribing to '$name' with resume: forbidden");
		ok(!@{ $json->{packets} // [] }, 'and no packets');
	}
	is(sql('SELECT count(*) FROM comet.packets'), 0, 'nothing was published');
	is($bridge->metrics->{comet_channels_listened}, 0, 'no refused channel was LISTENed');

	# packets exist on "secret": nobody may read them by resume or LISTEN
	sql(q{SELECT comet.send('secret', '{"n": 1}'); SELECT comet.send('secret', '{"n": 2}')});
	my $r = $bridge->setup(subscribe => [], resume => { secret => 0 }, wait => 1);
	ok($r->status == 400 || ($r->status == 200 && !@{ $r->response->{packets} // [] }),
		'a setup that resumes a channel it does not subscribe to gets none of its packets')
		or diag explain $r->response;
	my ($status, undef, $json) = $s->request(resume => { secret => 0 });
	ok($status == 400 || ($status == 200 && !grep { ($_->{channel} // '') eq 'secret' } @{ $json->{packets} // [] }),
		'nor a request that only resumes it') or diag explain $json;
	sql(q{SELECT pg_notify('secret', 'plain'); SELECT comet.send('secret', '{"n": 3}')});
	my $got = $s->collect(1, 1.5);
	is_deeply($got, [], 'a session that was refused a channel receives nothing from it');
	($status, undef, $json) = $s->request(unsubscribe => ['secret']);
	is($status, 200, 'unsubscribing from a channel never subscribed is harmless');
	$s->request(terminate => $true);
};

subtest 'one action granted is not the other' => sub {
	grant('sub-only', ['subscribe']);
	grant('pub-only', ['publish']);
	my $s = $bridge->setup(subscribe => ['sub-only'], wait => 1);
	is($s->status, 200, 'subscribe granted: subscribing works') or return;
	my ($status, undef, $json) = $s->request(send => [ { channel => 'sub-only', data => 1 } ]);
	forbidden_result($json, 'but publishing there is forbidden');
	is($bridge->setup(subscribe => ['pub-only'])->status, 403, 'publish granted: subscribing is 403');
	($status, undef, $json) = $s->request(send => [ { channel => 'pub-only', data => 1 } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'and publishing works');
	is(sql(q{SELECT count(*) FROM comet.packets WHERE channel = 'sub-only'}), 0, 'nothing reached sub-only');
	$s->request(terminate => $true);
};

# ---- tokens --------------------------------------------------------------------

grant('private:alice:%', ['subscribe', 'publish'], 'alice');
grant('private:bob:%', ['subscribe', 'publish'], 'bob');

subtest 'a revoked token stops working on the next request' => sub {
	my $token = sql(q{SELECT comet.issue_token('alice', '1 hour')});
	my $s = $bridge->setup(subscribe => ['private:alice:1'], auth => { token => $token }, wait => 1);
	is($s->status, 200, 'alice sets up with her token') or return;
	my ($status, undef, $json) = $s->request(send => [ { channel => 'private:alice:1', data => 'before' } ]);
	is_deeply($json->{results}, [ { ok => $true } ], 'and may publish');
	$s->collect(1, 2);
	is(sql("SELECT comet.revoke_token('$token')"), 't', 'the token is revoked');
	is($bridge->setup(subscribe => ['private:alice:1'], auth => { token => $token })->status, 403,
		'a new setup with it is 403');
	($status, undef, $json) = $s->request(send => [ { channel => 'private:alice:1', data => 'after' } ]);
	ok(($status // 0) == 403 || ($status // 0) == 404
			|| (($status // 0) == 200 && ($json->{results}[0]{error} // '') eq 'forbidden'),
		'the session it opened may no longer publish as alice') or diag("$status " . encode_json_canonical($json));
	($status, undef, $json) = $s->request(subscribe => ['private:alice:2']);
	ok(($status // 0) == 403 || ($status // 0) == 404
			|| (($status // 0) == 200 && ($json->{results}[0]{error} // '') eq 'forbidden'),
		'nor subscribe to another of her channels') or diag("$status " . encode_json_canonical($json));
	sql(q{SELECT comet.send('private:alice:1', '"secret after revoke"')});
	($status, undef, $json) = $s->request(timeout => 3);
	ok(!grep({ ($_->{data} // '') eq 'secret after revoke' } @{ ref $json eq 'HASH' ? $json->{packets} // [] : [] }),
		'nor read what is published on her channel after the revocation') or diag("$status " . encode_json_canonical($json));
};

subtest 'an expired token stops working on the next request' => sub {
	my $token = sql(q{SELECT comet.issue_token('alice', '2 seconds')});
	my $s = $bridge->setup(subscribe => ['private:alice:3'], auth => { token => $token }, wait => 1);
	is($s->status, 200, 'alice sets up with a token good for 2 s') or return;
	sleep 2.5;
	is($bridge->setup(subscribe => ['private:alice:3'], auth => { token => $token })->status, 403,
		'after 2.5 s a new setup with it is 403');
	my ($status, undef, $json) = $s->request(send => [ { channel => 'private:alice:3', data => 'late' } ]);
	ok(($status // 0) == 403 || ($status // 0) == 404
			|| (($status // 0) == 200 && ($json->{results}[0]{error} // '') eq 'forbidden'),
		'and the session it opened may no longer publish as alice') or diag("$status " . encode_json_canonical($json));
	is(sql(q{SELECT count(*) FROM comet.packets WHERE channel = 'private:alice:3'}), 0, 'nothing was published');
};

subtest 'a session that only polls: its next poll after a revocation is 403' => sub {
	my $token = sql(q{SELECT comet.issue_token('alice', '1 hour')});
	my $s = $bridge->setup(subscribe => ['private:alice:4'], auth => { token => $token }, wait => 2);
	is($s->status, 200, 'alice sets up with her token') or return;
	sql(q{SELECT comet.send('private:alice:4', '"before"')});
	my $got = $s->collect(1, 4);
	is(scalar @$got, 1, 'her polls receive while the token is good');
	is(sql("SELECT comet.revoke_token('$token')"), 't', 'the token is revoked');
	my ($status, undef, $json) = $s->request(timeout => 5);
	is($status, 403, 'the next poll is answered 403') or diag(encode_json_canonical($json));
	is($json->{error} // '', 'forbidden', '... forbidden');
	sql(q{SELECT comet.send('private:alice:4', '"after"')});
	($status, undef, $json) = $s->request(timeout => 3);
	ok(($status // 0) == 403 || ($status // 0) == 404, 'so is the request after it')
		or diag("$status " . encode_json_canonical($json));
	ok(!grep({ ($_->{data} // '') eq 'after' } @{ ref $json eq 'HASH' ? $json->{packets} // [] : [] }),
		'and nothing published after the revocation reaches her');
};

subtest 'a session that only polls: its next poll after the token expired is 403' => sub {
	my $token = sql(q{SELECT comet.issue_token('alice', '2 seconds')});
	my $s = $bridge->setup(subscribe => ['private:alice:5'], auth => { token => $token }, wait => 1);
	is($s->status, 200, 'alice sets up with a token good for 2 s') or return;
	sleep 2.5;
	my ($status, undef, $json) = $s->request(timeout => 4);
	is($status, 403, 'after 2.5 s her next poll is answered 403') or diag(encode_json_canonical($json));
};

subtest 'a refused work request with a terminate parked behind it ends the session once' => sub {
	my $token = sql(q{SELECT comet.issue_token('alice', '1 hour')});
	my $s = $bridge->setup(subscribe => ['private:alice:7'], auth => { token => $token }, wait => 5);
	is($s->status, 200, 'alice sets up') or return;
	sql("SELECT comet.revoke_token('$token')");
	my $rid = $s->last_rid;
	# the work (rid + 1) waits for its credentials check; the terminate (rid + 2) is parked
	my $work = $bridge->start_comet({ sid => $s->sid, rid => $rid + 1,
		send => [ { channel => 'private:alice:7', data => 'x' } ] });
	my $term = $bridge->start_comet({ sid => $s->sid, rid => $rid + 2, terminate => $true });
	my $r1 = $work->response(5);
	my $r2 = $term->response(5);
	is($r1 && $r1->{status}, 403, 'the work request is 403');
	is($r2 && $r2->{status}, 403, 'the terminate parked behind it is 403 too');
	ok($bridge->alive, 'the bridge runs on (the session was ended once, not freed twice)');
};

subtest 'token values are neither stored nor logged in clear' => sub {
	my $good = sql(q{SELECT comet.issue_token('alice', '1 hour')});
	my $unknown = 'x' . substr($good, 1);	# well-formed, never issued
	my $s = $bridge->setup(subscribe => ['private:alice:6'], auth => { token => $good }, wait => 1);
	is($s->status, 200, 'a setup with the token') or return;
	$s->request(send => [ { channel => 'private:alice:6', data => 'x' } ]);
	$s->collect(1, 2);
	is(sql(q{SELECT count(*) FROM comet.tokens WHERE subject = 'alice'}) > 0 ? 1 : 0, 1,
		'the token is in comet.tokens');
	is(sql(qq{SELECT count(*) FROM comet.tokens t WHERE row_to_json(t)::text LIKE '%} . substr($good, 0, 16) . qq{%'}), 0,
		'comet.tokens keeps no token value (a hash)');
	is($bridge->setup(subscribe => ['private:alice:6'], auth => { token => $unknown })->status, 403,
		'a setup with an unknown token is 403');
	sql("SELECT comet.revoke_token('$good')");
	$s->request(timeout => 3);
	$bridge->setup(subscribe => ['private:alice:6'], auth => { token => $good });
	my $log = $bridge->log_text;
	ok(length($log) > 0, 'the bridge logged (at debug level)');
	for my $token ($good, $unknown)
	{
		unlike($log, qr/\Q$token\E/, 'the bridge log never holds a token value');
		unlike($log, qr/\Q@{[substr($token, 0, 16)]}\E/, '... nor a part of one');
	}
	is(sql(qq{SELECT count(*) FROM comet.packets p WHERE row_to_json(p)::text LIKE '%} . substr($good, 0, 16) . qq{%'}), 0,
		'nor does any packet');
};

# ---- no internal details in answers ---------------------------------------------

sql(<<'SQL');
CREATE TABLE hidden_table_t24 (secret_column_t24 text);
CREATE TABLE checked_t24 (n int CONSTRAINT secret_check_t24 CHECK (n > 0) UNIQUE);
GRANT INSERT ON checked_t24 TO PUBLIC;
INSERT INTO checked_t24 VALUES (1);
CREATE FUNCTION t24_fail(what text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE x text;
BEGIN
  CASE what
    WHEN 'table' THEN SELECT secret_column_t24 INTO x FROM hidden_table_t24;
    WHEN 'div' THEN x := (1 / 0)::text;
    WHEN 'syntax' THEN EXECUTE 'SELEC secret_syntax_t24';
    WHEN 'assert' THEN ASSERT false, 'secret assert a24';
    WHEN 'internal' THEN RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = 'secret internal m24 in hidden_table_t24';
    WHEN 'check' THEN INSERT INTO checked_t24 VALUES (-1);
    WHEN 'unique' THEN INSERT INTO checked_t24 VALUES (1);
    WHEN 'raise' THEN RAISE EXCEPTION 'refused by the application'
      USING DETAIL = 'secret detail d24 hidden_table_t24', HINT = 'secret hint h24';
    WHEN 'auth28' THEN RAISE EXCEPTION 'who are you'
      USING ERRCODE = '28000', DETAIL = 'secret detail d24', HINT = 'secret hint h24';
    ELSE RETURN NULL;
  END CASE;
  RETURN x;
END $$;
CREATE FUNCTION t24_auth(auth jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF auth ? 'fail' THEN RETURN t24_fail(auth->>'fail'); END IF;
  RETURN comet.authenticate(auth);
END $$;
CREATE FUNCTION t24_authorize(subject text, channel text, action text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF channel LIKE 'fail:%' THEN PERFORM t24_fail(substr(channel, 6)); END IF;
  RETURN comet.authorize(subject, channel, action);
END $$;
CREATE FUNCTION t24_receive(subject text, sid text, channel text, data jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF data ? 'fail' THEN PERFORM t24_fail(data->>'fail'); END IF;
  PERFORM comet.send(channel, data);
END $$;
GRANT EXECUTE ON FUNCTION comet.authenticate(jsonb), comet.authorize(text, text, text) TO PUBLIC;
SQL
grant('leak', ['subscribe', 'publish']);

my @secrets = (qw(hidden_table_t24 secret_column_t24 checked_t24 secret_check_t24 secret_syntax_t24 t24_fail
	t24_auth t24_authorize t24_receive SELECT SELEC ERROR DETAIL HINT CONTEXT PL/pgSQL relation permission
	Permission constraint duplicate division 42501 22012 23514 23505 42601 P0004 XX000 28000 pg_ .c: comet.),
	'secret internal', 'secret detail', 'secret hint', 'secret assert', 'line ', 'statement', 'function');

sub no_leak
{
	my ($body, $name) = @_;
	my @found = grep { index($body // '', $_) >= 0 } @secrets;
	ok(!@found, "$name: the answer names nothing internal") or diag("found @found in: $body");
}

subtest 'errors never leak SQL text, table names or stack details' => sub {
	my $b = start_bridge(args => ['--wait', '5', '--auth-function', 't24_auth',
			'--authorize-function', 't24_authorize', '--receive-function', 't24_receive']);
	for my $what (qw(table div syntax assert internal check unique))
	{
		my ($status, undef, $json, $body) = $b->post_comet({ rid => 1, auth => { fail => $what } });
		is($status, 500, "auth failing with '$what': 500");
		is($json->{error}, 'internal-error', 'internal-error');
		no_leak($body, "auth failing with '$what'");

		($status, undef, $json, $body) = $b->post_comet({ rid => 1, subscribe => ["fail:$what"] });
		ok($status == 500 && $json->{error} eq 'internal-error', "authorize failing with '$what': 500 internal-error")
			or diag $body;
		no_leak($body, "authorize failing with '$what'");
	}
	my $s = $b->setup(subscribe => ['leak'], wait => 1);
	is($s->status, 200, 'a session') or return;
	for my $what (qw(table div syntax assert internal check unique))
	{
		my ($status, undef, $json, $body) = $s->request(send => [ { channel => 'leak', data => { fail => $what } } ]);
		is($status, 200, "receive failing with '$what': the request is answered");
		is($json->{results}[0]{error}, 'internal-error', 'its result is internal-error');
		no_leak($body, "receive failing with '$what'");
	}

	# RAISE's own message is for the client: only that, no DETAIL or HINT
	my ($status, undef, $json, $body) = $s->request(send => [ { channel => 'leak', data => { fail => 'raise' } } ]);
	is_deeply($json->{results}, [ { error => 'bad-request', message => 'refused by the application' } ],
		'a RAISE in the receive function passes its message only');
	no_leak($body, 'a RAISE in the receive function');
	($status, undef, $json, $body) = $b->post_comet({ rid => 1, auth => { fail => 'raise' } });
	is($status, 403, 'a RAISE in the auth function is 403');
	is($json->{message}, 'refused by the application', 'with its message only');
	no_leak($body, 'a RAISE in the auth function');
	($status, undef, $json, $body) = $b->post_comet({ rid => 1, auth => { fail => 'auth28' } });
	is($status, 403, 'an authentication error (class 28) is 403');
	is($json->{message}, 'who are you', 'with its message only');
	no_leak($body, 'an authentication error');

	my $log = $b->log_text;
	like($log, qr/hidden_table_t24/, 'the details are in the bridge\'s log');
	like($log, qr/secret_check_t24/, 'all of them');

	# the bridge's own refusals do not echo the input back at length
	($status, undef, $json, $body) = $b->post_comet('{"rid": 1, "subscribe": ["' . ('x' x 5000) . '"]}');
	is($status, 400, 'a bad request');
	cmp_ok(length $body, '<', 400, 'its answer does not echo the request');
	$b->kill_now;
};

# ---- CORS -------------------------------------------------------------------------

subtest 'CORS answers the configured origins only, exactly' => sub {
	my @allowed = ('http://app.example', 'https://other.example:8443');
	my $b = start_bridge(args => ['--wait', '5', map { ('--allow-origin', $_) } @allowed]);
	my @unknown = ('http://evil.example', 'http://app.example.evil.example', 'http://evilapp.example',
		'http://app.example:80', 'http://app.example/', 'https://app.example', 'HTTP://APP.EXAMPLE',
		'http://app.exampl', 'http://app.example.', 'https://other.example', 'https://other.example:8444',
		'null', '*', 'file://', 'http://app.example, http://evil.example', 'http://evil.example http://app.example');
	for my $origin (@unknown)
	{
		my $shown = $origin;
		my ($status, $headers) = $b->post_comet({ rid => random_rid(), subscribe => [] }, headers => { Origin => $origin });
		ok(!exists $headers->{'access-control-allow-origin'} && !exists $headers->{'access-control-allow-credentials'},
			"POST from '$shown': no Access-Control-Allow-*") or diag explain $headers;
		my $res = $b->http('OPTIONS', '/comet', headers => { Origin => $origin, 'Access-Control-Request-Method' => 'POST' });
		ok($res && $res->{status} == 403 && !exists $res->{headers}{'access-control-allow-origin'},
			"preflight from '$shown': 403 without Access-Control-Allow-Origin");
	}
	for my $origin (@allowed)
	{
		my ($status, $headers) = $b->post_comet({ rid => random_rid(), subscribe => [] }, headers => { Origin => $origin });
		is($headers->{'access-control-allow-origin'}, $origin, "POST from '$origin': Access-Control-Allow-Origin is that origin");
		like($headers->{vary} // '', qr/\bOrigin\b/i, 'with Vary: Origin');
		ok(!exists $headers->{'access-control-allow-credentials'}, 'never with credentials');
	}
	$b->kill_now;

	# off by default
	my ($status, $headers) = $bridge->post_comet({ rid => random_rid(), subscribe => [] }, headers => { Origin => $allowed[0] });
	ok(!exists $headers->{'access-control-allow-origin'}, 'without --allow-origin no origin is answered');
	my $res = $bridge->http('OPTIONS', '/comet', headers => { Origin => $allowed[0], 'Access-Control-Request-Method' => 'POST' });
	is($res && $res->{status}, 403, 'and every preflight is 403');
};

# ---- pattern tricks ---------------------------------------------------------------

subtest 'no subject reaches another subject\'s channels by pattern tricks' => sub {
	my %token = map { $_ => sql("SELECT comet.issue_token(" . q_literal($_) . ", '1 hour')") }
		('alice', 'bob', '%', '_lice', 'alic_', 'ALICE', 'alice ', ' alice', 'alice%', 'ali\\ce', 'alice\\', '%alice%');
	my $alice = $bridge->setup(subscribe => ['private:alice:1', 'private:alice:%', 'private:alice:_'],
		auth => { token => $token{alice} }, wait => 1);
	is($alice->status, 200, 'alice may subscribe to her channels, even to ones named with % and _');

	my @tricks = ('private:alice:1', 'private:alice:%', 'private:alice:_', 'private:%', 'private:_lice:1',
		'private:alic_:1', '%', '_', '%%', '%:%', 'private:alice:\\%', 'private:alice:\\', 'private:alice:',
		'private:alice', 'PRIVATE:ALICE:1', 'Private:Alice:1', 'private:alice:1 ', ' private:alice:1',
		'private:alice\\:1', 'private\\:alice:1', "private:alice:1\x{200b}", 'private:alice:1%');
	my $bob = $bridge->setup(subscribe => [], auth => { token => $token{bob} }, wait => 1);
	is($bob->status, 200, 'bob has a session') or return;
	for my $name (@tricks)
	{
		is($bridge->setup(subscribe => [$name], auth => { token => $token{bob} })->status, 403,
			"bob subscribing to '$name' at setup: 403");
		my (undef, undef, $json) = $bob->request(subscribe => [$name]);
		forbidden_result($json, "bob subscribing to '$name' later: forbidden");
		(undef, undef, $json) = $bob->request(send => [ { channel => $name, data => 'from bob' } ]);
		forbidden_result($json, "bob publishing on '$name': forbidden");
	}
	# JSON escapes spell the same names: still refused
	for my $escaped ('\\u0070rivate:alice:1', 'private:alice:\\u0031', 'private\\u003aalice\\u003a1', 'private:alice:\\u0025')
	{
		my (undef, undef, $json, $body) = $bridge->post_comet('{"rid":1,"subscribe":["' . $escaped . '"],"auth":{"token":"'
			. $token{bob} . '"}}');
		is($json->{error}, 'forbidden', "bob subscribing to \"$escaped\" (JSON escapes): forbidden") or diag $body;
	}
	for my $subject (grep { $_ ne 'alice' && $_ ne 'bob' } sort keys %token)
	{
		my $s = $bridge->setup(subscribe => ['private:alice:1'], auth => { token => $token{$subject} });
		is($s->status, 403, "subject '$subject' subscribing to private:alice:1: 403");
		$s = $bridge->setup(subscribe => [], auth => { token => $token{$subject} }, wait => 1);
		my (undef, undef, $json) = $s->request(send => [ { channel => 'private:alice:1', data => "from $subject" } ]);
		forbidden_result($json, "subject '$subject' publishing on private:alice:1: forbidden");
	}
	is(sql(q{SELECT count(*) FROM comet.packets WHERE data::text LIKE '%from %'}), 0, 'nothing was published by them');
	my $got = $alice->collect(1, 1);
	is_deeply($got, [], 'and alice received nothing from them');
};

subtest 'escaped grant patterns match only what they spell' => sub {
	grant('room:\\_x', ['subscribe']);
	grant('lit:100\\%', ['subscribe']);
	grant('esc:a\\\\b', ['subscribe']);
	my %want = ('room:_x' => 200, 'room:ax' => 403, 'room:__x' => 403, 'lit:100%' => 200, 'lit:1000' => 403,
		'lit:100x' => 403, 'lit:100%%' => 403, 'esc:a\\b' => 200, 'esc:ab' => 403, 'esc:a\\\\b' => 403, 'esc:a%b' => 403);
	for my $name (sort keys %want)
	{
		is($bridge->setup(subscribe => [$name])->status, $want{$name}, "'$name': $want{$name}");
	}
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
