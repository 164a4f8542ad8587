# 28-chunked-resume.t — a resume far behind, while packets keep being
# committed on the channel.  The answer carries the oldest
# max(--max-pending, 1000) packets of the backlog; the live packets that
# arrived meanwhile must not follow them (the last packet given would be
# above the position, and a client that follows docs/protocol.md would
# never ask for the rest): they are held until the client asks again, and
# then come after the rest of the backlog, each once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);
use CometTest;

grant('busy', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '5']);
my $watcher = $bridge->setup(subscribe => ['busy'], wait => 5);	# the channel is listened on
sql(q{SELECT comet.send('busy', to_jsonb(i)) FROM generate_series(1, 1500) i});
my $pid = fork // die "fork: $!";
if ($pid == 0)
{
	eval {
		CometTest::sql(q{DO $$ BEGIN FOR i IN 1..2000 LOOP PERFORM comet.send('busy', to_jsonb(i));
			COMMIT; PERFORM pg_sleep(0.001); END LOOP; END $$;}, timeout => 60);
	};
	POSIX::_exit(0);
}
sleep 0.2;
for my $round (1 .. 3)
{
	my $s = $bridge->setup(subscribe => ['busy'], resume => { busy => 0 }, wait => 1);
	is($s->status, 200, "round $round: a setup resuming from 0") or next;
	my $position = $s->response->{positions}{busy};
	my @seqs = map { $_->{seq} } grep { defined $_->{seq} } @{ $s->response->{packets} // [] };
	is_deeply(\@seqs, [ 1 .. scalar @seqs ], "round $round: the answer is the oldest packets, in order, no jump")
		or diag("position $position; " . scalar(@seqs) . " packets, $seqs[0]..$seqs[-1]");
	ok(@seqs && $seqs[-1] < $position, "round $round: it stops below the position ($seqs[-1] < $position): ask again");
	# as docs/protocol.md says: ask again from the last seq given, until the position
	my @all = @seqs;
	for my $ask (1 .. 10)
	{
		last if !@all || $all[-1] >= $position;
		my ($status, undef, $json) = $s->request(subscribe => ['busy'], resume => { busy => $all[-1] });
		last unless $status == 200;
		$position = $json->{positions}{busy} if defined $json->{positions}{busy};
		push @all, map { $_->{seq} } grep { defined $_->{seq} } @{ $json->{packets} // [] };
	}
	push @all, map { $_->{seq} } grep { defined $_->{seq} } @{ $s->collect(1, 0.5) };
	is_deeply(\@all, [ 1 .. scalar @all ],
		"round $round: asking again, then polling, gives every seq once, in order (" . scalar(@all) . ")");
	ok($all[-1] >= $position, "round $round: up to the position and beyond");
	$s->request(terminate => JSON::PP::true);
}
waitpid($pid, 0);
ok($bridge->alive, 'the bridge still runs');

# After a resume cut short the channel's live packets wait for the client
# to ask again; a failed ask keeps them waiting; a request that does not
# ask again (the client gave up: its subscribe was refused, say) lets them
# go from the position on.
my $role = CometTest::bridge_role();
grant('cut', ['subscribe']);
sql(q{SELECT comet.send('cut', to_jsonb(i)) FROM generate_series(1, 1500) i});
my $c = $bridge->setup(subscribe => ['cut'], resume => { cut => 0 }, wait => 1);
my @first = map { $_->{seq} } grep { defined $_->{seq} } @{ $c->response->{packets} // [] };
is($first[-1], 1000, 'a resume cut short at 1000');
sql(q{SELECT comet.send('cut', to_jsonb(i)) FROM generate_series(1501, 1505) i});
sql(qq{REVOKE EXECUTE ON FUNCTION comet.replay(text, bigint, integer) FROM $role});
my ($status) = $c->request(subscribe => ['cut'], resume => { cut => 1000 });
is($status, 500, 'asking again fails (comet.replay not allowed)');
sql(qq{GRANT EXECUTE ON FUNCTION comet.replay(text, bigint, integer) TO $role});
my ($status2, undef, $again) = $c->request(subscribe => ['cut'], resume => { cut => 1000 });
my @rest = map { $_->{seq} } grep { defined $_->{seq} } @{ $again->{packets} // [] };
is_deeply(\@rest, [ 1001 .. 1505 ], 'asking again once it works: the rest, then the live ones, nothing twice, no jump')
	or diag("status $status2: " . scalar(@rest) . " packets, " . ($rest[0] // '-') . '..' . ($rest[-1] // '-'));
$c->request(terminate => JSON::PP::true);

my $g = $bridge->setup(subscribe => ['cut'], resume => { cut => 0 }, wait => 1);
my @g1 = map { $_->{seq} } grep { defined $_->{seq} } @{ $g->response->{packets} // [] };
is($g1[-1], 1000, 'another resume cut short at 1000');
my $position = $g->response->{positions}{cut};
sql(q{SELECT comet.revoke('cut', ARRAY['subscribe'], NULL)});
my (undef, undef, $refused) = $g->request(subscribe => ['cut'], resume => { cut => 1000 });
is($refused->{results}[0]{error} // '', 'forbidden', 'asking again is refused: the client gives up');
sql(q{SELECT comet.send('cut', to_jsonb(i)) FROM generate_series(1506, 1508) i});
my $live = $g->collect(3, 3);
is_deeply([ map { $_->{seq} } @$live ], [ $position + 1 .. $position + 3 ],
	"its next polls get the channel's packets after the position ($position)");
$g->request(terminate => JSON::PP::true);

# An ask that fails for good (500: the client does not retry it) lets the
# channel go from the position at once; a 503 is retried, so it would not.
# Twice: failing late (comet.replay, after it subscribed) and early (the
# authorization query, before it subscribed anything).
sql(q{SELECT comet.grant('cut', ARRAY['subscribe'])});
sub failed_ask_lets_go
{
	my ($function, $where) = @_;
	my $f = $bridge->setup(subscribe => ['cut'], resume => { cut => 0 }, wait => 5);
	my @f1 = map { $_->{seq} } grep { defined $_->{seq} } @{ $f->response->{packets} // [] };
	is($f1[-1], 1000, "$where: a resume cut short at 1000");
	my $fpos = $f->response->{positions}{cut};
	sql(qq{REVOKE EXECUTE ON FUNCTION $function FROM $role});
	my ($fstatus) = $f->request(subscribe => ['cut'], resume => { cut => 1000 });
	sql(qq{GRANT EXECUTE ON FUNCTION $function TO $role});
	is($fstatus, 500, "$where: asking again fails with 500");
	sql(q{SELECT comet.send('cut', to_jsonb(i)) FROM generate_series(1, 2) i});
	my $started = Time::HiRes::time();
	my $after = $f->collect(2, 3);
	is_deeply([ map { $_->{seq} } @$after ], [ $fpos + 1, $fpos + 2 ],
		"$where: the next poll gets the channel's packets after the position ($fpos)");
	cmp_ok(Time::HiRes::time() - $started, '<', 2, "$where: within 2 s");
	$f->request(terminate => JSON::PP::true);
}
failed_ask_lets_go('comet.replay(text, bigint, integer)', 'failing in the replay');
failed_ask_lets_go('comet.authorize(text, text, text)', 'failing in the authorization');

# A client that only polls after a cut (it never asks again): its held poll
# is answered when the 15 s patience runs out, not after the whole wait,
# and the poll after it lets the channel go.
my $patient = start_bridge(args => ['--wait', '60']);
my $started;
my $p = $patient->setup(subscribe => ['cut'], resume => { cut => 0 }, wait => 60);
my $ppos = $p->response->{positions}{cut};
$started = Time::HiRes::time();
my $held = $p->start_poll;
sql(q{SELECT comet.send('cut', '"late"')});
my $res = $held->response(20);
my $took = Time::HiRes::time() - $started;
ok($res && $res->{status} == 200, 'the poll held after the cut is answered');
cmp_ok($took, '>=', 14, "not before the patience ran out ($took s)");
cmp_ok($took, '<', 18, 'nor long after');
my @late = map { $_->{seq} } grep { defined $_->{seq} } @{ $res->{json}{packets} // [] },
	@{ $p->collect(1, 3) };
is_deeply(\@late, [ $ppos + 1 ], 'then the live packet after the position');

# A poll that carries "resume" asks nothing (resume belongs with subscribe):
# after the patience it lets the cut go like any poll, no tight loop.
my $q = $patient->setup(subscribe => ['cut'], resume => { cut => 0 }, wait => 60);
my $qpos = $q->response->{positions}{cut};
my ($qstatus) = $q->request(resume => { cut => 1000 }, timeout => 20);
is($qstatus, 200, 'a poll with resume is answered (when the patience runs out)');
my $qpoll = $q->start_poll(resume => { cut => 1000 });
ok(!$qpoll->readable(0.5), 'the next one, after the patience, lets the channel go and is held (no tight loop)');
sql(q{SELECT comet.send('cut', '"after"')});
my $qres = $qpoll->response(3);
is_deeply([ map { $_->{seq} } @{ ($qres && $qres->{json}{packets}) // [] } ], [ $qpos + 1 ],
	'and carries the packet after the position');
$q->request(terminate => JSON::PP::true);
ok($patient->alive && $bridge->alive, 'the bridges still run');
$p->request(terminate => JSON::PP::true);
done_testing;
