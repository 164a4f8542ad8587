# 29-answers-in-rid-order.t — a client hands out an answer's packets only
# after those of every earlier rid (comet.js does; docs/protocol.md).  So
# when a work answer carries packets while a poll with an earlier rid is
# held, that poll must be answered too, at once: left held, it would keep
# the work answer's packets from the client until something else came (up
# to "wait" seconds).  A send whose own packet reaches the session in the
# same moment as the send's result is the everyday case (a chat line, a
# move); a resume on a session with a held poll is the other.  And once an
# answer carried packets, a retry of an earlier poll (its first copy's
# client left) must not carry newer ones.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time);
use CometTest;

grant('echo', ['subscribe', 'publish']);
grant('back', ['subscribe']);
grant('other', ['publish']);
grant('flow', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '20']);

sub seqs { [ map { $_->{seq} } grep { defined $_->{seq} } @{ $_[0] // [] } ] }

subtest "a send's own packet reaches the sender without a further request" => sub {
	my $s = $bridge->setup(subscribe => ['echo'], wait => 20);
	is($s->status, 200, 'setup succeeds') or return;
	my ($in_send, $in_poll, $late, $wrong) = (0, 0, 0, 0);
	my @got;
	for my $round (1 .. 40)
	{
		my $poll = $s->start_poll;
		# the poll is taken before the send (rids in order); give it a moment
		$poll->readable(0.02);
		my ($status, undef, $json) = $s->request(send => [ { channel => 'echo', data => $round } ],
			timeout => 5);
		if ($status != 200)
		{
			$wrong++;
			diag("round $round: send answered $status");
			last;
		}
		my $started = time;
		my $res = $poll->response(3);
		my $took = time - $started;
		$poll->close;
		if (!$res || $res->{status} != 200)
		{
			$late++;
			diag("round $round: the held poll was not answered within 3 s of the send's answer");
			last;
		}
		my $from_send = seqs($json->{packets});
		my $from_poll = seqs($res->{json}{packets});
		if (!@$from_poll && !@$from_send)
		{
			# the packet came after both: the next poll has it
			my $next = $s->start_poll;
			my $more = $next->response(3);
			$next->close;
			$from_poll = seqs($more && $more->{json}{packets});
		}
		$in_send++ if @$from_send;
		$in_poll++ if @$from_poll;
		push @got, @$from_send, @$from_poll;
	}
	is($late + $wrong, 0, 'every held poll was answered at once, with the packet or because the send carried it');
	is_deeply(\@got, [ 1 .. 40 ], 'every packet once, in order');
	note("the packet came with the send's answer $in_send times, on the held poll $in_poll times");
	$s->request(terminate => JSON::PP::true);
};

subtest 'a resume answer while a poll is held: the poll is answered first, empty' => sub {
	my $s = $bridge->setup(subscribe => ['echo'], wait => 20);
	is($s->status, 200, 'setup succeeds') or return;
	sql(q{SELECT comet.send('back', to_jsonb(i)) FROM generate_series(1, 3) i});
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.3), 'the poll is held');
	my ($status, undef, $json) = $s->request(subscribe => ['back'], resume => { back => 0 }, timeout => 5);
	is($status, 200, 'subscribing with resume succeeds');
	is_deeply(seqs($json->{packets}), [ 1, 2, 3 ], 'its answer carries the catch-up');
	my $started = time;
	my $res = $poll->response(3);
	ok($res && $res->{status} == 200, 'the held poll is answered');
	cmp_ok(time - $started, '<', 1, 'at once, not when wait runs out');
	is_deeply($res && $res->{json}, { rid => $poll->{rid}, packets => [] }, 'with nothing: the catch-up is the answer after it');
	sql(q{SELECT comet.send('back', '4')});
	is_deeply(seqs($s->collect(1, 3)), [4], 'the next live packet follows');
	$s->request(terminate => JSON::PP::true);
};

subtest 'a send with nothing to carry: the held poll stays held' => sub {
	my $s = $bridge->setup(subscribe => ['back'], wait => 20);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.3), 'the poll is held');
	my ($status, undef, $json) = $s->request(send => [ { channel => 'echo', data => 'elsewhere' } ], timeout => 5);
	is($status, 200, 'the send succeeds');
	is_deeply($json->{packets}, [], 'its answer carries no packet (the session does not read echo)');
	ok(!$poll->readable(1), 'the poll is still held');
	sql(q{SELECT comet.send('back', '"live"')});
	my $res = $poll->response(3);
	is_deeply(seqs($res && $res->{json}{packets}), [5], 'and carries the next packet of its channel');
	$s->request(terminate => JSON::PP::true);
};

subtest "a poll's retry after a later answer carried packets goes empty" => sub {
	my $s = $bridge->setup(subscribe => ['echo'], wait => 20);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.3), 'the poll is held');
	$poll->close;
	sleep 0.5;	# time for the bridge to notice
	sql(q{SELECT comet.send('echo', '"older"')});
	sleep 0.3;
	my ($status, undef, $json) = $s->request(send => [ { channel => 'other', data => 1 } ], timeout => 5);
	is($status, 200, 'a send on another channel (the next rid) succeeds');
	my $older = seqs($json->{packets});
	is(scalar @$older, 1, 'and its answer carries the queued packet');
	sql(q{SELECT comet.send('echo', '"newer"')});
	sleep 0.3;
	my $started = time;
	my ($retry_status, undef, $retry) = $s->request(rid => $poll->{rid}, timeout => 5);
	cmp_ok(time - $started, '<', 1, "the poll's retry (its rid again) is answered at once");
	is($retry_status, 200, 'with 200');
	is_deeply($retry && $retry->{packets}, [], 'and nothing: the newer packet must not come before the older one');
	my $next = seqs($s->collect(1, 3));
	is_deeply($next, [ $older->[0] + 1 ], 'the next poll carries the newer packet');
	$s->request(terminate => JSON::PP::true);
};

subtest 'subscribing while packets flow, with a poll held: in rid order, every seq after the position once' => sub {
	my $watcher = $bridge->setup(subscribe => ['flow'], wait => 20);	# the channel is listened on
	is($watcher->status, 200, 'a watcher subscribes') or return;
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		eval {
			CometTest::sql(q{DO $$ BEGIN FOR i IN 1..1500 LOOP PERFORM comet.send('flow', to_jsonb(i));
				COMMIT; PERFORM pg_sleep(0.002); END LOOP; END $$;}, timeout => 60);
		};
		POSIX::_exit(0);
	}
	my ($rounds, $bad) = (0, 0);
	for my $round (1 .. 12)
	{
		my $s = $bridge->setup(subscribe => ['echo'], wait => 20);
		next unless $s->status == 200;
		my $poll = $s->start_poll;
		$poll->readable(0.05);
		my ($status, undef, $json) = $s->request(subscribe => ['flow'], timeout => 5);
		next unless $status == 200 && defined $json->{positions}{flow};
		my $position = $json->{positions}{flow};
		my $res = $poll->response(3);	# it is answered: by a packet, or before the answer
		$poll->close;
		next unless $res && $res->{status} == 200;
		$rounds++;
		# rid order: the held poll, the subscribe's answer, then the next polls
		my @seqs = map { $_->{seq} } grep { $_->{channel} eq 'flow' }
			(@{ $res->{json}{packets} // [] }, @{ $json->{packets} // [] }, @{ $s->collect(5, 0.5) });
		my @want = ($position + 1 .. $position + scalar @seqs);
		if ("@seqs" ne "@want")
		{
			$bad++;
			diag("round $round: position $position, got @seqs[0 .. ($#seqs < 9 ? $#seqs : 9)]");
		}
		$s->request(terminate => JSON::PP::true);
	}
	waitpid($pid, 0);
	cmp_ok($rounds, '>=', 8, "subscribed while packets flowed ($rounds rounds)");
	is($bad, 0, 'every round: the seqs after the position, each once, in order');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
