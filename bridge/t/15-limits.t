# 15-limits.t — limits refuse or end politely and lose nothing: beyond
# --max-sessions a setup is 503 service-unavailable with Retry-After; a
# session whose queue passes --max-pending is ended with 410 overflow (the
# session function hears "overflow"); its client resumes in a new session
# and gets every packet, even when the catch-up is longer than
# --max-pending.  The session function hears "start" (subject NULL, the sid
# prefix) once when the bridge starts, before it serves.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('flood', ['subscribe']);
sql(<<'SQL');
CREATE TABLE presence_log (at timestamptz DEFAULT clock_timestamp(), subject text, sid text,
    event text, channels text[]);
CREATE FUNCTION presence(subject text, sid text, event text, channels text[]) RETURNS void
LANGUAGE sql AS $$ INSERT INTO presence_log (subject, sid, event, channels)
    VALUES (subject, sid, event, channels) $$;
GRANT INSERT ON presence_log TO PUBLIC;
SQL

my $bridge = start_bridge(args => ['--wait', '10', '--max-pending', '5', '--max-sessions', '3',
		'--session-function', 'presence']);

subtest 'the session function hears "start" before the bridge serves' => sub {
	like(sql(q{SELECT string_agg(coalesce(subject, '-') || ' ' || sid || ' ' || event || ' '
			|| channels::text, ';') FROM presence_log}), qr/^- [A-Za-z0-9-]+-${\ $bridge->port}\. start \{\}$/,
		'one call: no subject, the sid prefix (HOST-PORT. without --node-id), no channels');
	my $s = $bridge->setup(subscribe => []);
	like($s->sid, qr/^[A-Za-z0-9-]+-${\ $bridge->port}\.[A-Za-z0-9_-]{22,}$/, 'sids begin with that prefix');
	$s->request(terminate => JSON::PP::true);
	sql(q{DELETE FROM presence_log WHERE event <> 'start'});
	my $named = start_bridge(args => ['--wait', '10', '--node-id', 'n-7', '--session-function', 'presence']);
	is(sql(q{SELECT sid FROM presence_log WHERE event = 'start' ORDER BY at DESC LIMIT 1}), 'n-7.',
		'with --node-id the prefix is "NAME."');
	$named->kill_now;
	sql(q{DELETE FROM presence_log WHERE event = 'start'});
};

subtest 'beyond --max-sessions a setup is 503 with Retry-After' => sub {
	my @s = map { $bridge->setup(subscribe => []) } 1 .. 3;
	is(scalar(grep { $_->status == 200 } @s), 3, 'three sessions are allowed');
	my $fourth = $bridge->setup(subscribe => []);
	is($fourth->status, 503, 'a fourth gets 503');
	is($fourth->response->{error}, 'service-unavailable', 'service-unavailable');
	like($fourth->{headers}{'retry-after'} // '', qr/^\d+$/, 'with Retry-After');
	my ($status) = $s[0]->request(terminate => JSON::PP::true);
	is($status, 200, 'one session terminates');
	my $fifth = $bridge->setup(subscribe => []);
	is($fifth->status, 200, 'and a new one may start');
	$_->request(terminate => JSON::PP::true) for @s[1, 2], $fifth;
};

subtest 'setups in flight together cannot pass --max-sessions' => sub {
	# each setup waits for the authentication query: all ten are in flight
	# before the first session exists
	my @conns = map { CometTest::Conn->new($bridge->port) } 1 .. 10;
	for my $i (0 .. $#conns)
	{
		$conns[$i]->send_request('POST', '/comet',
			CometTest::encode_json_canonical({ rid => 100 + $i, wait => 5, subscribe => [] }),
			{ 'Content-Type' => 'application/json' });
	}
	my @res = map { $_->response(5) } @conns;
	my @ok = grep { $_ && $_->{status} == 200 } @res;
	my @full = grep { $_ && $_->{status} == 503 && ($_->{json}{error} // '') eq 'service-unavailable' } @res;
	is(scalar @ok, 3, 'exactly three sessions are set up');
	is(scalar @full, 7, 'the other seven get 503 service-unavailable');
	is($bridge->metrics->{comet_sessions}, 3, 'the bridge holds three sessions');
	for my $r (@ok)
	{
		my $c = CometTest::Conn->new($bridge->port);
		$c->send_request('POST', '/comet', CometTest::encode_json_canonical(
				{ sid => $r->{json}{sid}, rid => $r->{json}{rid} + 1, terminate => JSON::PP::true }),
			{ 'Content-Type' => 'application/json' });
		$c->response(5);
		$c->close;
	}
	$_->close for @conns;
	ok(wait_until(sub { ($bridge->metrics->{comet_sessions} // -1) == 0 }, 3), 'all three end');
};

subtest 'a setup that fails after its session was made is not announced' => sub {
	# the bridge's role may not read positions: setup fails at step 4, after
	# the session was created and subscribed
	my $role = CometTest::bridge_role();
	sql("REVOKE EXECUTE ON FUNCTION comet.last_seq(text) FROM $role");
	my $before = sql('SELECT count(*) FROM presence_log');
	my $s = $bridge->setup(subscribe => ['flood']);
	sql("GRANT EXECUTE ON FUNCTION comet.last_seq(text) TO $role");
	is($s->status, 500, 'the setup fails with 500');
	is($s->response->{error}, 'internal-error', 'internal-error');
	ok(wait_until(sub { ($bridge->metrics->{comet_sessions} // -1) == 0 }, 3), 'no session is left');
	sleep 0.5;	# a presence call would be on its way by now
	is(sql('SELECT count(*) FROM presence_log') - $before, 0,
		'the session function hears neither "open" nor an end');
	is(sql(q{SELECT count(*) FROM presence_log p WHERE event NOT IN ('open', 'start') AND NOT EXISTS
		(SELECT 1 FROM presence_log o WHERE o.sid = p.sid AND o.event = 'open')}), 0,
		'no session ever ended unopened');
};

my $from;	# where the overflowed client resumes from

subtest 'a queue past --max-pending ends the session with overflow' => sub {
	my $s = $bridge->setup(subscribe => ['flood'], wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	$from = $s->response->{positions}{flood};
	sql(join '', map { qq{SELECT comet.send('flood', '{"n": $_}');\n} } 1 .. 8);
	sleep 0.5;	# no poll held: the packets queue up
	my ($status, undef, $json) = $s->request(timeout => 3);
	is($status, 410, 'the next poll gets 410');
	is($json->{error}, 'overflow', 'overflow');
	($status, undef, $json) = $s->request(timeout => 3);
	is($status, 404, 'then the session is gone');
	my $events = wait_until(sub { sql("SELECT string_agg(event, ',' ORDER BY at) FROM presence_log WHERE sid = '"
				. $s->sid . "'") =~ /overflow/ }, 3);
	ok($events, 'the session function heard "overflow"');
	ok($bridge->alive, 'the bridge still runs');
};

subtest 'the client resumes, though the catch-up is longer than --max-pending' => sub {
	my $again = $bridge->setup(subscribe => ['flood'], resume => { flood => $from // 0 }, wait => 1);
	is($again->status, 200, 'the client resumes in a new session') or return;
	my @packets = @{ $again->response->{packets} // [] };
	push @packets, @{ $again->collect(8 - @packets, 4) } if @packets < 8;
	is_deeply([ map { $_->{seq} } @packets ], [ 1 .. 8 ], 'and gets every packet, 1 to 8, once');
	ok($bridge->alive, 'the bridge still runs') or diag('comet-bridge: ' . $bridge->exit_description);
};

done_testing;
