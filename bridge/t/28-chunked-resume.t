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
done_testing;
