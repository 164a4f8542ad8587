# 01-setup.t — the setup request: a request without "sid" opens a session and
# its answer describes the session (sid, rid, wait, hold, requests,
# inactivity, subscribed, positions, packets).  Session ids are long,
# URL-safe and never repeat.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('lobby', ['subscribe']);
grant('lobby:%', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '20', '--inactivity', '30']);

subtest 'a setup answer describes the new session' => sub {
	my $rid = random_rid();
	my $s = $bridge->setup(rid => $rid, subscribe => ['lobby'], wait => 5);
	is($s->status, 200, 'setup succeeds');
	like($s->{headers}{'content-type'} // '', qr{^application/json}, 'the answer is JSON');
	my $r = $s->response;
	like($r->{sid}, qr/^[A-Za-z0-9_.~-]+$/, 'sid is URL-safe');
	is($r->{rid}, $rid, 'rid is the setup request\'s rid');
	is($r->{wait}, 5, 'wait is what the client asked for');
	is($r->{hold}, 1, 'hold is 1');
	is($r->{requests}, 2, 'requests is 2');
	is($r->{inactivity}, 30, 'inactivity is the bridge\'s --inactivity');
	is_deeply($r->{subscribed}, ['lobby'], 'subscribed lists the channel');
	is_deeply($r->{positions}, { lobby => 0 }, 'position of a channel never sent to is 0');
	is_deeply($r->{packets}, [], 'no packets');
};

subtest 'a sid carries at least 128 random bits and is new every time' => sub {
	my %seen;
	for (1 .. 20)
	{
		my $s = $bridge->setup(subscribe => []);
		is($s->status, 200, 'setup succeeds') or last;
		my $sid = $s->sid;
		like($sid, qr/^[A-Za-z0-9-]+\.[A-Za-z0-9_-]+$/, 'NODE-ID.random') if $_ == 1;
		(my $random = $sid) =~ s/^.*\.//;
		my $bits = $random =~ /^[0-9a-f]+$/i ? 4 * length($random) : 6 * length($random);
		cmp_ok($bits, '>=', 128, "sid $sid is long enough for 128 bits") if $_ == 1;
		ok(!$seen{$sid}++, "sid $sid was not handed out before");
	}
	my @sids = sort map { (my $r = $_) =~ s/^.*\.//; $r } keys %seen;
	my $shared = 0;
	for my $i (1 .. $#sids)
	{
		my ($a, $b) = @sids[$i - 1, $i];
		my $n = 0;
		$n++ while $n < length($a) && substr($a, $n, 1) eq substr($b, $n, 1);
		$shared = $n if $n > $shared;
	}
	cmp_ok($shared, '<', 8, 'random parts share no long common prefix (they are not a counter)');
};

subtest 'wait: the bridge\'s --wait when the client asks for none or for more' => sub {
	my $s = $bridge->setup(subscribe => [], wait => 'none');
	is($s->status, 200, 'setup without wait succeeds');
	is($s->response->{wait}, 20, 'wait defaults to --wait');
	$s = $bridge->setup(subscribe => [], wait => 3600);
	is($s->status, 200, 'setup with a long wait succeeds');
	is($s->response->{wait}, 20, 'wait is capped at --wait');
};

subtest 'a setup without channels' => sub {
	my $s = $bridge->setup();
	is($s->status, 200, 'setup succeeds');
	is_deeply($s->response->{subscribed}, [], 'subscribed is empty');
	is_deeply($s->response->{positions} // {}, {}, 'positions is empty');
};

subtest 'positions: the last seq committed before the subscription' => sub {
	sql(q{SELECT comet.send('lobby', '{"n": 1}'); SELECT comet.send('lobby', '{"n": 2}')});
	my $s = $bridge->setup(subscribe => ['lobby', 'lobby:empty']);
	is($s->status, 200, 'setup succeeds');
	is_deeply($s->response->{positions}, { lobby => 2, 'lobby:empty' => 0 },
		'positions give each channel\'s last seq');
	is_deeply([ sort @{ $s->response->{subscribed} } ], [ 'lobby', 'lobby:empty' ],
		'both channels are subscribed');
	is_deeply($s->response->{packets}, [], 'packets sent before the setup are not delivered');

	my ($status, undef, $json) = $s->request(subscribe => ['lobby:later']);
	is($status, 200, 'a later subscribe succeeds');
	is_deeply($json->{results}, [ { ok => JSON::PP::true } ], 'one ok result');
	is_deeply($json->{positions}, { 'lobby:later' => 0 }, 'its answer has positions for the new channel');
};

subtest '--node-id prefixes sids' => sub {
	my $node = start_bridge(args => ['--node-id', 'node7']);
	my $s = $node->setup(subscribe => ['lobby']);
	is($s->status, 200, 'setup succeeds') or return;
	like($s->sid, qr/^node7\.[A-Za-z0-9_~-]{22,}$/, 'the sid is "node7." and a random part');
	my ($status) = $node->post_comet({ sid => $s->sid, rid => $s->last_rid + 1, terminate => JSON::PP::true });
	is($status, 200, 'the prefixed sid works');
	$node->kill_now;
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
