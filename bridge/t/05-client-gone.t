# 05-client-gone.t — a held request whose client closed its socket is noticed
# and never carries packets: a packet committed afterwards stays queued and
# the client's next request gets it, exactly once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('gone', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '10']);

subtest 'the next poll (next rid) gets the packet' => sub {
	my $s = $bridge->setup(subscribe => ['gone'], wait => 8);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.5), 'the poll is held');
	$poll->close;
	sleep 0.5;	# time for the bridge to notice
	sql(q{SELECT comet.send('gone', '{"n": 1}')});
	sleep 0.3;
	my ($status, undef, $json) = $s->request(timeout => 3);
	is($status, 200, 'the next poll succeeds');
	is_deeply($json->{packets}, [ { channel => 'gone', seq => 1, data => { n => 1 } } ],
		'and carries the packet');
	my $poll2 = $s->start_poll;
	ok(!$poll2->readable(0.5), 'the packet is not delivered again');
};

subtest 'a retry with the same rid gets the packet' => sub {
	# a client whose connection broke retries its request with the same rid
	my $s = $bridge->setup(subscribe => ['gone'], wait => 8);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.5), 'the poll is held');
	$poll->close;
	sleep 0.5;
	sql(q{SELECT comet.send('gone', '{"n": 2}')});
	sleep 0.3;
	my ($status, undef, $json) = $s->request(rid => $poll->{rid}, timeout => 3);
	is($status, 200, 'the retried poll succeeds');
	is_deeply($json->{packets}, [ { channel => 'gone', seq => 2, data => { n => 2 } } ],
		'and carries the packet');
};

subtest 'a client gone while packets arrive for others' => sub {
	my $a = $bridge->setup(subscribe => ['gone'], wait => 8);
	my $b = $bridge->setup(subscribe => ['gone'], wait => 8);
	my $pa = $a->start_poll;
	my $pb = $b->start_poll;
	ok(!$pa->readable(0.3) && !$pb->readable(0), 'both polls are held');
	$pa->close;
	sleep 0.5;
	sql(q{SELECT comet.send('gone', '{"n": 3}')});
	my $res = $pb->response(3);
	is_deeply($res && $res->{json}{packets}, [ { channel => 'gone', seq => 3, data => { n => 3 } } ],
		'the session still connected gets the packet at once');
	my ($status, undef, $json) = $a->request(timeout => 3);
	is_deeply($json->{packets}, [ { channel => 'gone', seq => 3, data => { n => 3 } } ],
		'the other gets it with its next poll');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
