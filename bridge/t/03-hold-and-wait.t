# 03-hold-and-wait.t — a pure poll with nothing queued is held until "wait"
# runs out and then answered {"rid": n, "packets": []}; a new poll answers
# the held one at once and is held itself; a poll finds queued packets at
# once; a request that changes something is answered at once while the
# held poll stays held.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use CometTest;

grant('tick', ['subscribe']);
grant('tock', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '10']);

subtest 'a poll is held until wait runs out, then answered empty' => sub {
	my $s = $bridge->setup(subscribe => ['tick'], wait => 2);
	is($s->status, 200, 'setup succeeds') or return;
	is($s->response->{wait}, 2, 'wait is 2 s');
	my $started = time;
	my $poll = $s->start_poll;
	ok(!$poll->readable(1.5), 'not answered after 1.5 s');
	my $res = $poll->response(3);
	my $took = time - $started;
	ok($res, 'answered') or return;
	is($res->{status}, 200, 'status 200');
	is_deeply($res->{json}, { rid => $poll->{rid}, packets => [] }, 'body is {"rid": n, "packets": []}');
	cmp_ok($took, '>=', 1.9, 'after about 2 s');
	cmp_ok($took, '<', 3.5, 'not much later');
};

subtest 'a second poll answers the held one at once and is held itself' => sub {
	my $s = $bridge->setup(subscribe => ['tick'], wait => 8);
	is($s->status, 200, 'setup succeeds') or return;
	my $first = $s->start_poll;
	ok(!$first->readable(0.5), 'the first poll is held');
	my $started = time;
	my $second = $s->start_poll;
	my $res = $first->response(2);
	ok($res, 'the first poll is answered');
	cmp_ok(time - $started, '<', 1, 'at once');
	is_deeply($res && $res->{json}, { rid => $first->{rid}, packets => [] }, 'empty, with its own rid');
	ok(!$second->readable(0.5), 'the second poll is held');
	sql(q{SELECT comet.send('tick', '"one"')});
	$res = $second->response(3);
	is_deeply($res && $res->{json}, { rid => $second->{rid},
			packets => [ { channel => 'tick', seq => 1, data => 'one' } ] },
		'the second poll carries the next packet');
};

subtest 'a poll is answered at once when packets are queued' => sub {
	my $s = $bridge->setup(subscribe => ['tick'], wait => 8);
	is($s->status, 200, 'setup succeeds') or return;
	sql(q{SELECT comet.send('tick', '"two"'); SELECT comet.send('tick', '"three"')});
	sleep 0.5;	# no poll is held: the packets queue
	my $started = time;
	my ($status, undef, $json) = $s->request(timeout => 3);
	cmp_ok(time - $started, '<', 1, 'answered at once');
	is($status, 200, 'status 200');
	is_deeply($json->{packets}, [ { channel => 'tick', seq => 2, data => 'two' },
			{ channel => 'tick', seq => 3, data => 'three' } ], 'with both queued packets, in order');
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.5), 'and the next poll is held: the queue was emptied');
};

subtest 'a request that subscribes is answered at once; the held poll stays held' => sub {
	my $s = $bridge->setup(subscribe => ['tick'], wait => 8);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.3), 'the poll is held');
	my $started = time;
	my ($status, undef, $json) = $s->request(subscribe => ['tock'], timeout => 3);
	cmp_ok(time - $started, '<', 1, 'the subscribe is answered at once');
	is($status, 200, 'status 200');
	is_deeply($json->{results}, [ { ok => JSON::PP::true } ], 'with one ok result');
	ok(!$poll->readable(0.5), 'the poll is still held');
	sql(q{SELECT comet.send('tock', '"tock"')});
	my $res = $poll->response(3);
	is_deeply($res && $res->{json}{packets}, [ { channel => 'tock', seq => 1, data => 'tock' } ],
		'and carries a packet of the new channel');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
