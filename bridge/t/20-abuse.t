# 20-abuse.t — abuse by volume: thousands of setups that never poll,
# floods of polls for sessions that do not exist, and connections that
# send half a request and stall (slowloris).  Throughout, a reference
# session keeps a poll held and its commit-to-receipt latency is measured
# before, during and after; the bridge's memory (VmRSS) is measured before,
# at the peak and after the abandoned sessions expired, and printed.
#
# The setups count against --max-sessions (one more is 503 with
# Retry-After) and end by --inactivity, after which new setups work again.
# Polls with unknown sids are 404 item-not-found and cost the database
# nothing (the bridge's backends run no query meanwhile).  Stalled
# connections leave others served, also on a bridge whose connection limit
# (2 x --max-sessions + 64) they exceed, and once they are gone the bridge
# accepts connections again.  libmicrohttpd closes stalled connections
# after HTTP_IDLE_TIMEOUT_S (30 s, bridge/http.c): COMET_TEST_LONG=1
# waits for that too.
#
# Under AddressSanitizer the freed memory of expired sessions would sit in
# ASan's quarantine (256 MB by default) and RSS could not come back down:
# this file's bridge runs with the quarantine off.  ASan still checks
# bounds and leaks; a use after free is caught only until the memory is
# reused.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Time::HiRes qw(time sleep);
use Test::More;
use CometTest;

my $FLOOD = 3000;		# setups that never poll
my $MAX_SESSIONS = 3000;	# the reference session + 2999 of them
my $INACTIVITY = 3;

grant('ref', ['subscribe']);
grant('flood', ['subscribe']);

# Is the bridge binary built with AddressSanitizer?
sub bridge_is_asan
{
	my $binary = $ENV{COMET_BRIDGE} // 'bridge/comet-bridge';
	open(my $f, '<:raw', $binary) or return 0;
	local $/;
	my $bytes = <$f>;
	return index($bytes, '__asan_init') >= 0 ? 1 : 0;
}

my $asan = bridge_is_asan();
my $bridge;
{
	local $ENV{ASAN_OPTIONS} = join(':', grep { defined && length } $ENV{ASAN_OPTIONS},
		'quarantine_size_mb=0', 'thread_local_quarantine_size_kb=0') if $asan;
	$bridge = start_bridge(log_level => 'info', args => ['--wait', '10',
			'--max-sessions', $MAX_SESSIONS, '--inactivity', $INACTIVITY]);
}
note('the bridge is an ASan build: its quarantine is off for the RSS figures') if $asan;

# VmRSS of a process in kB.
sub rss_kb
{
	my ($pid) = @_;
	open(my $f, '<', "/proc/$pid/status") or return undef;
	while (<$f>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/ }
	return undef;
}

# ---- the reference session and its latency ---------------------------------

# A psql kept open: a statement written to it runs at once.
my $psql_pid = open(my $psql, '|-', PSQL, '-X', '-q', '-At', '-o', '/dev/null',
	'-v', 'ON_ERROR_STOP=1', '-d', test_db_conninfo()) or die "psql: $!";
$psql->autoflush(1);

my $ref = $bridge->setup(subscribe => ['ref'], wait => 10);
is($ref->status, 200, 'the reference session is set up') or BAIL_OUT('no reference session');

# One commit-to-receipt sample of the reference session: a poll is held,
# a packet carrying the database's clock at send time is committed, and
# the time it arrives is taken.  Returns seconds, or undef.
sub latency_sample
{
	my $poll = $ref->start_poll;
	sleep 0.02;	# the poll is held by now (if not, the packet waits for it)
	print $psql "SELECT comet.send('ref', jsonb_build_object('t', extract(epoch from clock_timestamp())));\n";
	my $res = $poll->response(5);
	my $at = time;
	$poll->close;
	return undef unless $res && $res->{status} == 200;
	my ($packet) = @{ $res->{json}{packets} // [] };
	return undef unless $packet && ref $packet->{data} eq 'HASH';
	return $at - $packet->{data}{t};
}

sub median
{
	my @s = sort { $a <=> $b } @_;
	return undef unless @s;
	return $s[$#s / 2];
}

sub describe
{
	my @s = sort { $a <=> $b } @_;
	return 'no samples' unless @s;
	return sprintf('%d samples, median %.2f ms, p90 %.2f ms, max %.2f ms', scalar @s,
		1000 * median(@s), 1000 * $s[int(0.9 * $#s)], 1000 * $s[-1]);
}

# the bound the brief sets: within 3x the quiet median plus 50 ms
sub latency_bound { my ($quiet) = @_; return 3 * $quiet + 0.050; }

latency_sample() for 1 .. 3;	# warm up
my @quiet = grep { defined } map { latency_sample() } 1 .. 20;
is(scalar @quiet, 20, 'every quiet sample arrived');
my $quiet = median(@quiet) // 1;
note('reference latency, quiet: ' . describe(@quiet));

# ---- setups that never poll ------------------------------------------------

# $n setups pipelined on $conns keep-alive connections, in a child process
# (so that this one can measure meanwhile).  Returns the child's pid and
# the file where it writes "status sid" per answer.
sub start_flood
{
	my ($n, $conns) = @_;
	my $out = "/tmp/comet-t20-flood.$$." . int(rand(1e9));
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		my @c = map { CometTest::Conn->new($bridge->port) } 1 .. $conns;
		my @count = map { int($n / $conns) + ($_ < $n % $conns ? 1 : 0) } 0 .. $conns - 1;
		my $body = encode_json_canonical({ rid => 1, subscribe => ['flood'], wait => 5 });
		my $req = "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
			. "Content-Length: " . length($body) . "\r\n\r\n$body";
		open(my $fh, '>', $out) or POSIX::_exit(2);
		# in batches of 50 a connection, so that no socket buffer fills up
		my $left = $n;
		while ($left > 0)
		{
			my @batch;
			for my $i (0 .. $#c)
			{
				my $k = $count[$i] < 50 ? $count[$i] : 50;
				$count[$i] -= $k;
				$c[$i]->send_raw($req x $k) if $k;
				push @batch, $k;
			}
			for my $i (0 .. $#c)
			{
				for (1 .. $batch[$i])
				{
					my $res = $c[$i]->response(20);
					print $fh $res ? "$res->{status} " . ($res->{json}{sid} // '-')
						. ' ' . ($res->{headers}{'retry-after'} // '-') . "\n" : "none\n";
					$left--;
				}
			}
		}
		close $fh;
		$_->close for @c;
		POSIX::_exit(0);	# not the harness's END blocks: the parent owns the bridge
	}
	return ($pid, $out);
}

sub read_flood
{
	my ($out) = @_;
	open(my $fh, '<', $out) or return [];
	my @lines = map { chomp; [ split / / ] } <$fh>;
	close $fh;
	unlink $out;
	return \@lines;
}

my %rss;
$rss{baseline} = rss_kb($bridge->pid);

subtest "$FLOOD setups that never poll" => sub {
	my ($pid, $out) = start_flood($FLOOD, 4);
	my @during;
	my $peak = 0;
	my $deadline = time + 60;
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); fail('the flood ended in time'); last; }
		my $r = rss_kb($bridge->pid) // 0;
		$peak = $r if $r > $peak;
		my $l = latency_sample();
		push @during, $l if defined $l;
	}
	my $answers = read_flood($out);
	my @ok = grep { $_->[0] eq '200' } @$answers;
	my @full = grep { $_->[0] eq '503' } @$answers;
	is(scalar @$answers, $FLOOD, "all $FLOOD setups were answered");
	is(scalar @ok, $MAX_SESSIONS - 1, 'all but one were set up: --max-sessions counts them with the reference');
	is(scalar @full, 1, 'the one over --max-sessions got 503');
	ok(!grep({ $_->[2] !~ /^\d+$/ } @full), 'with Retry-After');
	my %seen;
	is(scalar(grep { !$seen{ $_->[1] }++ } @ok), scalar @ok, 'every sid differs');
	my $m = $bridge->metrics;
	is($m->{comet_sessions}, $MAX_SESSIONS, "the bridge holds $MAX_SESSIONS sessions");
	my $extra = $bridge->setup(subscribe => []);
	is($extra->status, 503, 'another setup gets 503 while they last');
	is($extra->response->{error}, 'service-unavailable', 'service-unavailable');

	my @held;
	push @held, grep { defined } map { latency_sample() } 1 .. 20;
	$rss{peak} = rss_kb($bridge->pid);
	$rss{peak} = $peak if $peak > $rss{peak};
	note('reference latency during the flood: ' . describe(@during));
	note("reference latency with $MAX_SESSIONS sessions open: " . describe(@held));
	cmp_ok(scalar @during, '>=', 1, 'the reference session was served during the flood');
	cmp_ok(median(@during) // 99, '<=', latency_bound($quiet),
		sprintf('its median latency during the flood is within 3x + 50 ms of %.2f ms', 1000 * $quiet));
	is(scalar @held, 20, "every sample arrived with $MAX_SESSIONS sessions open");
	cmp_ok(median(@held) // 99, '<=', latency_bound($quiet), 'and the median is within the same bound');
};

subtest 'the abandoned sessions end by --inactivity' => sub {
	# keep the reference session's poll held meanwhile: it must not expire
	my $deadline = time + $INACTIVITY + 10;
	my $gone = 0;
	while (time < $deadline)
	{
		my $poll = $ref->start_poll;
		my $until = time + 1;
		while (time < $until)
		{
			$gone = ($bridge->metrics->{comet_sessions} // -1) == 1;
			last if $gone;
			sleep 0.1;
		}
		sql(q{SELECT comet.send('ref', '{"tick": true}')});
		my $res = $poll->response(5);
		$poll->close;
		ok($res && $res->{status} == 200, 'the reference session is served') or last;
		last if $gone;
	}
	ok($gone, "within --inactivity ($INACTIVITY s) + 10 s only the reference session is left");
	my $again = $bridge->setup(subscribe => ['flood']);
	is($again->status, 200, 'a new setup works again');
	$again->request(terminate => JSON::PP::true);
	my @after = grep { defined } map { latency_sample() } 1 .. 20;
	note('reference latency after they expired: ' . describe(@after));
	cmp_ok(median(@after) // 99, '<=', latency_bound($quiet), 'the reference latency is as before');
	sleep 0.5;
	$rss{after} = rss_kb($bridge->pid);
};

subtest 'a second round of abandoned setups: memory stays bounded' => sub {
	my ($pid, $out) = start_flood($MAX_SESSIONS - 1, 4);
	waitpid($pid, 0);
	my $answers = read_flood($out);
	is(scalar(grep { $_->[0] eq '200' } @$answers), $MAX_SESSIONS - 1, 'they are set up again');
	$rss{peak2} = rss_kb($bridge->pid);
	my $gone = wait_until(sub {
		my $poll = $ref->start_poll;
		my $n = $bridge->metrics->{comet_sessions} // -1;
		sql(q{SELECT comet.send('ref', '{"tick": true}')});
		$poll->response(5);
		$poll->close;
		$n == 1;
	}, $INACTIVITY + 10);
	ok($gone, 'and end again');
	sleep 0.5;
	$rss{after2} = rss_kb($bridge->pid);
};

subtest 'memory' => sub {
	my %mb = map { $_ => defined $rss{$_} ? sprintf('%.1f MB', $rss{$_} / 1024) : '?' } keys %rss;
	diag("bridge VmRSS: baseline $mb{baseline}, peak with $MAX_SESSIONS sessions $mb{peak},"
		. " after they expired $mb{after}; second round: peak $mb{peak2}, after $mb{after2}"
		. ($asan ? ' (ASan build, quarantine off)' : ''));
	ok(defined $rss{baseline} && defined $rss{after2}, 'VmRSS was read from /proc') or return;
	cmp_ok($rss{peak}, '<', $rss{baseline} + 40 * 1024,
		"the peak stays under baseline + 40 MB ($MAX_SESSIONS sessions)");
	cmp_ok($rss{after}, '<', $rss{baseline} + 20 * 1024,
		'after they expired it is back near the baseline (under baseline + 20 MB)');
	cmp_ok($rss{peak2}, '<', $rss{peak} + 5 * 1024, 'a second round peaks no higher (+5 MB slack)');
	cmp_ok($rss{after2}, '<', $rss{baseline} + 20 * 1024, 'and ends near the baseline too');
};

# ---- polls for sessions that do not exist --------------------------------

# (pid, query_start) of the bridge's database connections.
sub bridge_backends
{
	return sql(q{SELECT string_agg(pid || '@' || coalesce(query_start::text, '-'), ' ' ORDER BY pid)
		FROM pg_stat_activity WHERE application_name = 'comet-bridge' AND datname = current_database()});
}

subtest 'polls with unknown sids: 404 item-not-found and no database work' => sub {
	my $ref_poll = $ref->start_poll;
	sleep 0.3;
	my $before = bridge_backends();
	like($before, qr/@/, 'the bridge\'s backends are seen in pg_stat_activity') or diag $before;
	my $m0 = $bridge->metrics;
	my $n = 0;
	my $bad = 0;
	my @alphabet = ('A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_');
	my @conns = map { CometTest::Conn->new($bridge->port) } 1 .. 4;
	for my $round (1 .. 5)
	{
		for my $c (@conns)
		{
			my $raw = '';
			for (1 .. 100)
			{
				my $sid = join '', map { $alphabet[ rand @alphabet ] } 1 .. 24;
				my $rid = random_rid();
				# the plain poll, a work request, a URL sid, a terminate
				my @bodies = ({ sid => $sid, rid => $rid },
					{ sid => $sid, rid => $rid, send => [ { channel => 'ref', data => 1 } ] },
					{ sid => $sid, rid => $rid, subscribe => ['ref'] },
					{ sid => $sid, rid => $rid, terminate => JSON::PP::true });
				my $body = encode_json_canonical($bodies[ $n % 4 ]);
				my $path = $n % 3 == 0 ? "/comet?sid=$sid" : '/comet';
				$raw .= "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " . length($body)
					. "\r\n\r\n$body";
				$n++;
			}
			$c->send_raw($raw);
		}
		for my $c (@conns)
		{
			for (1 .. 100)
			{
				my $res = $c->response(10);
				$bad++ unless $res && $res->{status} == 404 && ($res->{json}{error} // '') eq 'item-not-found'
					&& length($res->{json}{message} // '');
			}
		}
	}
	$_->close for @conns;
	is($bad, 0, "all $n are 404 item-not-found with a message");
	my $m1 = $bridge->metrics;
	is($m1->{'comet_errors_total{condition="item-not-found"}'} - $m0->{'comet_errors_total{condition="item-not-found"}'},
		$n, 'comet_errors_total{condition="item-not-found"} counts them');
	is($m1->{comet_sessions_created_total}, $m0->{comet_sessions_created_total}, 'no session was created');
	is(bridge_backends(), $before, 'the bridge\'s database connections ran no query meanwhile');
	my $s = $bridge->setup(subscribe => []);
	isnt(bridge_backends(), $before, '(while a setup does show there)');
	$s->request(terminate => JSON::PP::true);
	ok(!$ref_poll->readable(0), 'the reference poll is still held') or diag explain $ref_poll->response(1);
	sql(q{SELECT comet.send('ref', '"after the unknown sids"')});
	my $res = $ref_poll->response(5);
	is_deeply([ map { $_->{data} } @{ $res ? $res->{json}{packets} : [] } ], ['after the unknown sids'],
		'and gets its packet');
	$ref_poll->close;
};

# ---- slowloris -----------------------------------------------------------------

subtest '200 connections that send half a request and stall' => sub {
	my @stalled;
	for my $i (1 .. 200)
	{
		my $c = eval { CometTest::Conn->new($bridge->port) };
		last unless $c;
		# half the headers; a quarter of them get their headers and half a body
		$c->send_raw($i % 4
			? "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
			: "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"rid\": 1, \"subscribe\": [");
		push @stalled, $c;
	}
	is(scalar @stalled, 200, '200 connections are open');
	sleep 0.5;
	my $rss = rss_kb($bridge->pid);
	note(sprintf('bridge VmRSS with 200 stalled connections: %.1f MB', $rss / 1024));
	my @l = grep { defined } map { latency_sample() } 1 .. 10;
	note('reference latency with 200 stalled connections: ' . describe(@l));
	is(scalar @l, 10, 'the reference session is served');
	cmp_ok(median(@l) // 99, '<=', latency_bound($quiet), 'with its latency within the bound');
	my $s = $bridge->setup(subscribe => ['flood']);
	is($s->status, 200, 'a new setup works');
	my $res = $bridge->http('GET', '/healthz');
	is($res && $res->{status}, 200, '/healthz answers');
	is(scalar(grep { $_->readable(0) } @stalled), 0, 'no stalled connection got an answer');

	# libmicrohttpd closes them after HTTP_IDLE_TIMEOUT_S (bridge/http.c: 30 s);
	# COMET_TEST_LONG=1 waits for that (it would hold up the rest of this file)
	if ($ENV{COMET_TEST_LONG})
	{
		alarm 0;
		alarm 120;
		my $closed = wait_until(sub { !grep { !$_->closed_by_peer } @stalled }, 45);
		ok($closed, 'the stalled connections are closed by the idle timeout (30 s)');
	}
	$_->close for @stalled;
};

# The connection limit is 2 x --max-sessions + 64 (bridge/main.c), and a
# stalled partial request holds its connection for HTTP_IDLE_TIMEOUT_S
# (30 s): with --max-sessions 50 (limit 164), 200 stalled connections from
# one address would be more than the limit.  --max-connections-per-address
# caps what one address holds, so the others (here 127.0.0.1; the attacker
# is 127.0.0.2) keep being served.  Once the stalled connections are gone
# the bridge must accept again; it is stopped (SIGSTOP) while they close,
# so that it sees every close in one loop iteration, as a busy bridge would.
subtest 'stalled connections from one address do not lock others out (--max-connections-per-address)' => sub {
	my $small = start_bridge(log_level => 'info',
		args => ['--wait', '10', '--max-sessions', '50', '--max-connections-per-address', '100']);
	my @stalled;
	for my $i (1 .. 200)
	{
		my $c = eval { CometTest::Conn->new($small->port, '127.0.0.2') };
		last unless $c;
		$c->send_raw("POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le");
		push @stalled, $c;
	}
	is(scalar @stalled, 200, '200 connections opened from 127.0.0.2');
	sleep 0.3;
	my $refused = grep { $_->closed_by_peer } @stalled;
	is($refused, 100, 'the bridge closed those past the 100 one address may hold');
	my $res = $small->http('GET', '/healthz', timeout => 3);
	is($res && $res->{status}, 200, '/healthz still answers within 3 s from 127.0.0.1');
	my $s = $small->setup(subscribe => []);
	is($s->status, 200, 'a setup is still served');

	$small->signal('STOP');
	$_->close for @stalled;
	sleep 0.2;
	$small->signal('CONT');
	$res = wait_until(sub { my $r = $small->http('GET', '/healthz', timeout => 1); $r && $r->{status} == 200 }, 5);
	ok($res, 'once they are closed, the bridge accepts connections again (within 5 s)');
	my $c = eval { CometTest::Conn->new($small->port, '127.0.0.2') };
	ok($c, 'and 127.0.0.2 may connect again');
	$c->close if $c;
	ok($small->alive, 'the small bridge still runs');
	$small->kill_now;
};

ok($bridge->alive, 'the bridge still runs');
close $psql;
done_testing;
