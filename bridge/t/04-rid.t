# 04-rid.t — request ids: a rid already answered gets the very same response
# again (and a repeated send is not carried out twice); requests are
# processed in rid order; a rid beyond the window, or long gone, ends the
# session with 404 item-not-found, and the session stays ended.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('seq', ['subscribe', 'publish']);
my $bridge = start_bridge(args => ['--wait', '10']);

sub last_seq { sql(q{SELECT comet.last_seq('seq')}) }

subtest 'a repeated rid gets the byte-identical response' => sub {
	my $s = $bridge->setup(subscribe => ['seq'], wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll = $s->start_poll;
	sql(q{SELECT comet.send('seq', '{"n": 1, "text": "caf\u00e9"}')});
	my $res = $poll->response(3);
	ok($res && $res->{status} == 200, 'the poll is answered with the packet') or return;
	my ($status, undef, undef, $body) = $s->request(rid => $poll->{rid}, timeout => 3);
	is($status, 200, 'the repeated poll gets 200');
	is($body, $res->{body}, 'and the same bytes');
};

subtest 'a repeated send gets the same response and is not sent twice' => sub {
	my $s = $bridge->setup(subscribe => [], wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	my $before = last_seq();
	my $rid = $s->next_rid;
	my @send = (send => [ { channel => 'seq', data => { once => 1 } } ]);
	my ($status, undef, $json, $body) = $s->request(rid => $rid, @send);
	is($status, 200, 'the send succeeds');
	is_deeply($json->{results}, [ { ok => JSON::PP::true } ], 'ok');
	my ($status2, undef, undef, $body2) = $s->request(rid => $rid, @send);
	is($status2, 200, 'the repeated send gets 200');
	is($body2, $body, 'and the same bytes');
	is(last_seq(), $before + 1, 'one packet was sent, not two');
};

subtest 'requests are processed in rid order' => sub {
	my $s = $bridge->setup(subscribe => ['seq'], wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	my $poll_rid = $s->next_rid;
	my $send_rid = $s->next_rid;
	my $send = $bridge->start_comet({ sid => $s->sid, rid => $send_rid,
			send => [ { channel => 'seq', data => 'early' } ] });
	ok(!$send->readable(0.7), 'a request that came before its turn waits');
	my $poll = $s->start_poll(rid => $poll_rid);
	my $res = $send->response(3);
	ok($res, 'it is answered once the rid before it came');
	is($res && $res->{status}, 200, 'with 200');
	is_deeply($res && $res->{json}{results}, [ { ok => JSON::PP::true } ], 'and an ok result');
	$res = $poll->response(3);
	ok($res, 'the poll before it carries the packet') or return;
	is_deeply([ map { $_->{data} } @{ $res->{json}{packets} // [] } ], ['early'], 'the packet sent')
		or diag explain $res->{json};
};

subtest 'a rid beyond the window ends the session' => sub {
	my $s = $bridge->setup(subscribe => ['seq'], wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	my $next = $s->last_rid + 1;
	my ($status, undef, $json) = $s->request(rid => $next + 5);
	is($status, 404, 'a rid far ahead gets 404');
	is($json->{error}, 'item-not-found', 'item-not-found');
	ok(defined $json->{message} && !ref $json->{message}, 'with a message');
	($status, undef, $json) = $s->request(rid => $next);
	is($status, 404, 'the session is gone: the right rid now gets 404 too');
	is($json->{error}, 'item-not-found', 'item-not-found');
};

subtest 'a rid long before the window ends the session' => sub {
	my $s = $bridge->setup(subscribe => ['seq'], wait => 1);
	is($s->status, 200, 'setup succeeds') or return;
	my $first = $s->last_rid;
	for (1 .. 4)
	{
		my ($status) = $s->request(timeout => 3);
		is($status, 200, 'a poll is answered');
	}
	my ($status, undef, $json) = $s->request(rid => $first - 10);
	is($status, 404, 'a rid from long ago gets 404');
	is($json->{error}, 'item-not-found', 'item-not-found');
	($status, undef, $json) = $s->request(timeout => 3);
	is($status, 404, 'the session is gone');
};

subtest 'a rid just beyond the window (next + requests) ends the session' => sub {
	my $s = $bridge->setup(subscribe => ['seq'], wait => 5);
	is($s->status, 200, 'setup succeeds') or return;
	my $next = $s->last_rid + 1;
	my ($status, undef, $json) = $s->request(rid => $next + 2);
	is($status, 404, 'rid next + 2 gets 404');
	is($json->{error}, 'item-not-found', 'item-not-found');
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
