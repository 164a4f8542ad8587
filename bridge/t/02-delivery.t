# 02-delivery.t — packets reach subscribers: a held poll is answered when a
# durable packet commits, never for a rollback; packets of a channel arrive
# in seq order with their seq; a plain NOTIFY arrives without seq (its JSON
# payload parsed, any other payload as a string); a 1 MiB packet arrives
# whole; every subscriber gets it; an unsubscribed channel is quiet; a
# forged wake-up (any role may NOTIFY) does not hide real packets.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('news', ['subscribe']);
grant('other', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '10']);

my $s = $bridge->setup(subscribe => ['news'], wait => 8);
is($s->status, 200, 'setup succeeds') or BAIL_OUT('no session');

subtest 'a held poll is answered when a packet commits' => sub {
	my $poll = $s->start_poll;
	ok(!$poll->readable(0.5), 'the poll is held while nothing is sent');
	sql(q{SELECT comet.send('news', '{"n": 1}')});
	my $res = $poll->response(3);
	ok($res, 'the poll is answered') or return;
	is($res->{status}, 200, 'status 200');
	is_deeply($res->{json}, { rid => $poll->{rid},
			packets => [ { channel => 'news', seq => 1, data => { n => 1 } } ] },
		'the answer carries the packet with its seq');
};

subtest 'a rolled-back packet is never delivered and takes no seq' => sub {
	my $poll = $s->start_poll;
	sql(q{BEGIN; SELECT comet.send('news', '{"n": "rolled back"}'); ROLLBACK;});
	sql(q{SELECT comet.send('other', '{"n": "other channel"}')});
	ok(!$poll->readable(1), 'nothing arrives for a rollback or another channel');
	sql(q{SELECT comet.send('news', '{"n": 2}')});
	my $res = $poll->response(3);
	ok($res, 'the poll is answered') or return;
	is_deeply($res->{json}{packets}, [ { channel => 'news', seq => 2, data => { n => 2 } } ],
		'only the committed packet arrives, with the next seq');
};

subtest 'packets of a channel arrive in seq order' => sub {
	sql(q{BEGIN; SELECT comet.send('news', jsonb_build_object('n', i)) FROM generate_series(3, 7) i; COMMIT;});
	sql(join '', map { qq{SELECT comet.send('news', '{"n": $_}');\n} } 8 .. 12);
	my $packets = $s->collect(10, 5);
	is(scalar @$packets, 10, 'ten packets arrive');
	is_deeply([ map { $_->{seq} } @$packets ], [ 3 .. 12 ], 'seqs 3 to 12, in order');
	is_deeply([ map { $_->{data}{n} } @$packets ], [ 3 .. 12 ], 'each with its own data');
	is_deeply([ grep { $_->{channel} ne 'news' } @$packets ], [], 'all on the channel');
};

subtest 'a plain NOTIFY with a JSON payload arrives without seq' => sub {
	my $poll = $s->start_poll;
	sql(q{SELECT pg_notify('news', '{"plain": true, "list": [1, 2]}')});
	my $res = $poll->response(3);
	ok($res, 'the poll is answered') or return;
	my $p = $res->{json}{packets}[0];
	is($p->{channel}, 'news', 'on its channel');
	ok(!exists $p->{seq}, 'without seq');
	is_deeply($p->{data}, { plain => JSON::PP::true, list => [ 1, 2 ] }, 'data is the payload as JSON');
};

subtest 'a plain NOTIFY with any other payload arrives as a string' => sub {
	my $poll = $s->start_poll;
	sql(q[NOTIFY news, 'hello, "world" {']);
	my $res = $poll->response(3);
	ok($res, 'the poll is answered') or return;
	is_deeply($res->{json}{packets}, [ { channel => 'news', data => 'hello, "world" {' } ],
		'data is the payload as a JSON string');
};

subtest 'a 1 MiB packet arrives whole' => sub {
	my $poll = $s->start_poll;
	sql(q{SELECT comet.send('news', jsonb_build_object('blob', repeat('x', 1048576), 'n', 13))});
	my $res = $poll->response(10);
	ok($res, 'the poll is answered') or return;
	my $p = $res->{json}{packets}[0];
	is($p->{seq}, 13, 'with the next seq');
	is($p->{data}{n}, 13, 'with its data');
	is(length($p->{data}{blob} // ''), 1048576, 'the 1 MiB string is whole');
	ok(($p->{data}{blob} // '') =~ /^x+$/, 'and unaltered');
};

subtest 'every subscriber gets the packet' => sub {
	my @sessions = map { $bridge->setup(subscribe => ['news'], wait => 8) } 1 .. 3;
	my @polls = map { $_->start_poll } @sessions;
	sleep 0.2;
	sql(q{SELECT comet.send('news', '{"n": 14}')});
	my $pp = $s->start_poll;
	for my $poll (@polls, $pp)
	{
		my $res = $poll->response(3);
		is_deeply($res && $res->{json}{packets}, [ { channel => 'news', seq => 14, data => { n => 14 } } ],
			'a subscriber gets seq 14');
	}
};

subtest 'after unsubscribe a channel\'s packets are no longer delivered' => sub {
	my ($status, undef, $json) = $s->request(subscribe => ['other']);
	is($status, 200, 'subscribe to other');
	is_deeply($json->{results}, [ { ok => JSON::PP::true } ], 'ok');
	($status, undef, $json) = $s->request(unsubscribe => ['news']);
	is($status, 200, 'unsubscribe from news');
	is_deeply($json->{results}, [ { ok => JSON::PP::true } ], 'ok');
	my $poll = $s->start_poll;
	sql(q{SELECT comet.send('news', '{"n": 15}')});
	ok(!$poll->readable(1), 'a packet on news does not arrive');
	sql(q{SELECT comet.send('other', '{"n": "still here"}')});
	my $res = $poll->response(3);
	is_deeply($res && $res->{json}{packets},
		[ { channel => 'other', seq => 2, data => { n => 'still here' } } ],
		'a packet on the other channel does');
};

subtest 'a forged wake-up does not make real packets look like duplicates' => sub {
	# any role may NOTIFY; a listener must not trust a wake-up's seq
	my $f = $bridge->setup(subscribe => ['news'], wait => 8);
	my $last = $f->response->{positions}{news};
	my $poll = $f->start_poll;
	sql(q{SELECT pg_notify('news', 'comet/1 1000 {"forged": true}')});
	my $res = $poll->response(1.5);
	my @forged = grep { ($_->{seq} // 0) == 1000 } @{ $res ? $res->{json}{packets} // [] : [] };
	is_deeply(\@forged, [], 'no packet is delivered as seq 1000');
	sql(q{SELECT comet.send('news', '"real"')});
	my $packets;
	if ($res)
	{
		$packets = $f->collect(1, 3);
	}
	else
	{
		# the poll is still held: the real packet comes on it
		$res = $poll->response(3);
		$packets = $res ? $res->{json}{packets} : [];
	}
	is_deeply([ map { [ $_->{seq}, $_->{data} ] } grep { ($_->{data} // '') eq 'real' } @$packets ],
		[ [ $last + 1, 'real' ] ], 'the next real packet arrives with its seq');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
