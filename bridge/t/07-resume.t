# 07-resume.t — a client that lost its session sets up a new one with
# "resume": {"channel": last seq seen}.  The setup answer carries every kept
# packet after that seq, in order; packets pruned meanwhile are announced
# as a gap {"from", "to"} before the kept ones; live packets follow without
# duplicates.  Nothing is lost silently.  A catch-up longer than one answer
# carries comes in chunks, oldest first: the client asks again from its
# last seq until it reaches the position.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('feed', ['subscribe']);
grant('pruned', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '10']);

sub send_n
{
	my ($channel, @n) = @_;
	sql(join '', map { qq{SELECT comet.send('$channel', '{"n": $_}');\n} } @n);
}

sub durable { my ($ch, @n) = @_; [ map { { channel => $ch, seq => $_, data => { n => $_ } } } @n ] }

send_n('feed', 1 .. 5);

subtest 'resume with no gap: the packets after the seq are in the setup answer' => sub {
	my $s = $bridge->setup(subscribe => ['feed'], resume => { feed => 2 });
	is($s->status, 200, 'setup succeeds') or return;
	is_deeply($s->response->{packets}, durable('feed', 3, 4, 5), 'packets 3 to 5, in order');
	is_deeply($s->response->{positions}, { feed => 5 }, 'position is 5');
};

subtest 'resume from the last seq: nothing to catch up' => sub {
	my $s = $bridge->setup(subscribe => ['feed'], resume => { feed => 5 });
	is($s->status, 200, 'setup succeeds') or return;
	is_deeply($s->response->{packets}, [], 'no packets');
};

subtest 'resume from 0: everything kept' => sub {
	my $s = $bridge->setup(subscribe => ['feed'], resume => { feed => 0 });
	is($s->status, 200, 'setup succeeds') or return;
	is_deeply($s->response->{packets}, durable('feed', 1 .. 5), 'packets 1 to 5');
};

subtest 'live packets follow the catch-up without duplicates' => sub {
	my $s = $bridge->setup(subscribe => ['feed'], resume => { feed => 4 }, wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	is_deeply($s->response->{packets}, durable('feed', 5), 'packet 5 in the setup answer');
	send_n('feed', 6, 7);
	my $packets = $s->collect(2, 4);
	is_deeply($packets, durable('feed', 6, 7), 'then 6 and 7, once each');
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.5), 'and nothing more');
};

subtest 'resume after prune: a gap, then the kept packets' => sub {
	send_n('pruned', 1 .. 3);
	sleep 1.6;
	send_n('pruned', 4, 5);
	my $deleted = sql(q{SELECT comet.prune('1 second')});
	cmp_ok($deleted, '>=', 3, 'prune removed the old packets');
	is(sql(q{SELECT string_agg(seq::text, ',' ORDER BY seq) FROM comet.replay('pruned', 0)}), '4,5',
		'packets 4 and 5 are kept');

	my $s = $bridge->setup(subscribe => ['pruned'], resume => { pruned => 1 });
	is($s->status, 200, 'setup resuming from 1 succeeds') or return;
	is_deeply($s->response->{packets},
		[ { channel => 'pruned', gap => { from => 2, to => 3 } }, @{ durable('pruned', 4, 5) } ],
		'a gap from 2 to 3, then 4 and 5');

	$s = $bridge->setup(subscribe => ['pruned'], resume => { pruned => 0 });
	is($s->status, 200, 'setup resuming from 0 succeeds') or return;
	is_deeply($s->response->{packets},
		[ { channel => 'pruned', gap => { from => 1, to => 3 } }, @{ durable('pruned', 4, 5) } ],
		'a gap from 1 to 3, then 4 and 5');

	$s = $bridge->setup(subscribe => ['pruned'], resume => { pruned => 3 });
	is($s->status, 200, 'setup resuming from 3 succeeds') or return;
	is_deeply($s->response->{packets}, durable('pruned', 4, 5), 'no gap when nothing missed was pruned');
};

subtest 'a gap when every packet after the seq was pruned' => sub {
	sleep 1.1;
	sql(q{SELECT comet.prune('1 second')});
	is(sql(q{SELECT count(*) FROM comet.replay('pruned', 0)}), 0, 'nothing is kept');
	my $s = $bridge->setup(subscribe => ['pruned'], resume => { pruned => 2 });
	is($s->status, 200, 'setup succeeds') or return;
	is_deeply($s->response->{packets}, [ { channel => 'pruned', gap => { from => 3, to => 5 } } ],
		'a gap from 3 to 5');
	is_deeply($s->response->{positions}, { pruned => 5 }, 'position is 5');
};

subtest 'a catch-up longer than one answer comes in chunks, oldest first, without a gap' => sub {
	grant('long', ['subscribe']);
	sql(q{SELECT comet.send('long', jsonb_build_object('n', i)) FROM generate_series(1, 2500) i});
	my $s = $bridge->setup(subscribe => ['long'], resume => { long => 0 });
	is($s->status, 200, 'setup succeeds') or return;
	my @seqs = map { $_->{seq} // "gap" } @{ $s->response->{packets} // [] };
	is_deeply(\@seqs, [ 1 .. 1000 ], 'the answer carries the oldest 1,000 (max(--max-pending, 1000))');
	is($s->response->{positions}{long}, 2500, 'positions say how far there is to go');
	my $last = $seqs[-1];
	for my $round (1, 2)
	{
		my ($status, undef, $json) = $s->request(subscribe => ['long'], resume => { long => $last });
		is($status, 200, "asking again from $last") or return;
		my @more = map { $_->{seq} // "gap" } @{ $json->{packets} // [] };
		is_deeply(\@more, [ $last + 1 .. ($round == 1 ? 2000 : 2500) ], 'the next chunk, no gap');
		$last = $more[-1] // $last;
	}
	sql(q{SELECT comet.send('long', '{"n": 2501}')});
	my $packets = $s->collect(1, 3);
	is_deeply([ map { $_->{seq} } @$packets ], [ 2501 ], 'then live packets follow');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
