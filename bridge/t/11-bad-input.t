# 11-bad-input.t — bad input is refused with the right condition and harms
# nothing: bodies that are not JSON or have wrong types, bad rids and
# channel names are 400 bad-request; a body over --max-body is 413
# request-too-large; an unknown sid is 404 item-not-found; GET /comet is
# 405.  Channel names are only names: quotes, SQL and case travel safely.
# Meanwhile a good session keeps its held poll and gets its packet.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

grant('good', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '30', '--max-body', '4096']);
my $good = $bridge->setup(subscribe => ['good'], wait => 30);
is($good->status, 200, 'a good session') or BAIL_OUT('no session');
my $good_poll = $good->start_poll;

# Refused with status and condition, and a human message.
sub refused
{
	my ($body, $status, $condition, $name) = @_;
	my ($st, $headers, $json, $raw) = $bridge->post_comet($body, timeout => 3);
	subtest $name => sub {
		is($st, $status, "status $status");
		is(ref $json eq 'HASH' && $json->{error}, $condition, $condition) or diag $raw;
		ok(ref $json eq 'HASH' && defined $json->{message} && !ref $json->{message}
			&& length $json->{message}, 'with a message');
	};
}

sub bad { refused($_[0], 400, 'bad-request', $_[1]) }

my $rid = random_rid();

# not JSON, or not an object
bad('', 'an empty body');
bad('this is not json', 'text that is not JSON');
bad('{"rid": 5, "subscribe": ["good"]', 'truncated JSON');
bad('{"rid": 5,}', 'JSON with a trailing comma');
bad('[1, 2, 3]', 'a JSON array');
bad('null', 'JSON null');
bad('"rid"', 'a JSON string');
bad("{\"rid\": 5, \"subscribe\": [\"\xff\xfe\"]}", 'invalid UTF-8');
bad(('[' x 2000) . (']' x 2000), 'JSON nested 2000 deep');
bad('{"rid": 5, "subscribe": ' . ('[' x 1000) . (']' x 1000) . '}', 'a member nested 1000 deep');

# rid
bad({ subscribe => ['good'] }, 'rid missing');
bad({ rid => -1, subscribe => ['good'] }, 'rid negative');
bad({ rid => 2**53, subscribe => ['good'] }, 'rid 2^53');
bad('{"rid": 18446744073709551616, "subscribe": ["good"]}', 'rid 2^64');
bad('{"rid": 1e300, "subscribe": ["good"]}', 'rid 1e300');
bad('{"rid": 1.5, "subscribe": ["good"]}', 'rid 1.5');
bad({ rid => "$rid", subscribe => ['good'] }, 'rid as a string');
bad({ rid => undef, subscribe => ['good'] }, 'rid null');

# wrong types
bad({ rid => $rid, subscribe => 'good' }, 'subscribe is a string');
bad({ rid => $rid, subscribe => [1] }, 'subscribe holds a number');
bad({ rid => $rid, subscribe => [ ['good'] ] }, 'subscribe holds an array');
bad({ rid => $rid, subscribe => { good => 1 } }, 'subscribe is an object');
bad({ rid => $rid, wait => 'long' }, 'wait is a string');
bad({ rid => $rid, wait => -5 }, 'wait is negative');
bad({ rid => $rid, resume => { good => 'x' } }, 'resume seq is a string');
bad({ rid => $rid, resume => { good => -1 } }, 'resume seq is negative');
bad({ rid => $rid, resume => ['good'] }, 'resume is an array');
bad({ rid => $rid, auth => 'token' }, 'auth is a string');
bad({ sid => $good->sid, rid => $good->last_rid + 1, send => 'hello' }, 'send is a string');
bad({ sid => $good->sid, rid => $good->last_rid + 1, send => [ { channel => 'good' } ] }, 'a send item without data');
bad({ sid => $good->sid, rid => $good->last_rid + 1, send => [ { data => 1 } ] }, 'a send item without channel');
bad({ sid => $good->sid, rid => $good->last_rid + 1, terminate => 'yes' }, 'terminate is a string');
bad({ sid => 42, rid => $rid }, 'sid is a number');

# channel names: 1 to 63 bytes, no control characters
bad({ rid => $rid, subscribe => [''] }, 'an empty channel name');
bad({ rid => $rid, subscribe => [ 'x' x 64 ] }, 'a 64-byte channel name');
bad({ rid => $rid, subscribe => ["a\nb"] }, 'a channel name with a newline');
bad({ rid => $rid, subscribe => ["a\x{0}b"] }, 'a channel name with NUL');
bad({ rid => $rid, subscribe => ["tab\there"] }, 'a channel name with a tab');
bad({ rid => $rid, subscribe => [ "\x{e9}" x 32 ] }, 'a channel name of 64 bytes in 32 characters');
bad({ sid => $good->sid, rid => $good->last_rid + 1, send => [ { channel => '', data => 1 } ] },
	'sending to an empty channel name');
bad({ rid => $rid, resume => { '' => 1 } }, 'resuming an empty channel name');

subtest 'a 63-byte channel name is valid' => sub {
	my $s = $bridge->setup(subscribe => [ 'x' x 63 ]);
	is($s->status, 403, 'it is only not granted (403, not 400)');
};

# sessions, sizes, methods
refused({ sid => 'no-such-session-AAAAAAAAAAAAAAAAAAAAAA', rid => $rid }, 404, 'item-not-found', 'an unknown sid');
subtest 'a sid with odd characters' => sub {
	my ($status, undef, $json) = $bridge->post_comet({ sid => "x'; DROP TABLE comet.packets; --", rid => $rid });
	ok($status == 400 || $status == 404, "is refused ($status)");
	like($json->{error} // '', qr/^(bad-request|item-not-found)$/, 'as bad-request or item-not-found');
};
refused({ rid => $rid, subscribe => ['good'], padding => 'x' x 5000 }, 413, 'request-too-large', 'a body over --max-body');
{
	my $res = $bridge->http('GET', '/comet');
	is($res && $res->{status}, 405, 'GET /comet is 405');
	is($res && ref $res->{json} eq 'HASH' && $res->{json}{error}, 'method-not-allowed', 'method-not-allowed');
	$res = $bridge->http('PUT', '/comet', body => '{}');
	is($res && $res->{status}, 405, 'PUT /comet is 405');
	$res = $bridge->http('GET', '/no-such-path');
	is($res && $res->{status}, 404, 'an unknown path is 404');
}
subtest 'HTTP that is not HTTP' => sub {
	my $c = $bridge->connect;
	$c->send_raw("THIS IS NOT HTTP\r\n\r\n");
	my $res = $c->response(3);
	ok(!$res || $res->{status} >= 400, 'is refused or the connection closed');
	$c->close;
	$c = $bridge->connect;
	$c->send_raw("POST /comet HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"rid\":");
	$c->close;	# a body cut short by the client
	ok(1, 'a body cut short');
};

subtest 'channel names with quotes, SQL and capitals are just names' => sub {
	my @names = ('say "hi"', q{it's}, q{x"; UNLISTEN *; --}, q{'); DROP TABLE comet.packets; --},
		'Grid:Main', 'grid:main', "caf\x{e9} \x{2603}", 'a b');
	for my $name (@names)
	{
		(my $q = $name) =~ s/'/''/g;
		sql("SELECT comet.grant(replace('$q', '%', '\\%'), ARRAY['subscribe'])");
	}
	my $s = $bridge->setup(subscribe => \@names, wait => 8);
	is($s->status, 200, 'a session subscribes to them all') or return;
	is_deeply([ sort @{ $s->response->{subscribed} } ], [ sort @names ], 'subscribed names are as given');
	my $n = 0;
	my $sends = '';
	for my $name (@names)
	{
		(my $q = $name) =~ s/'/''/g;
		$n++;
		$sends .= "SELECT comet.send('$q', '$n');\n";
	}
	sql($sends);
	my $packets = $s->collect(scalar @names, 5);
	is_deeply([ map { [ $_->{channel}, $_->{data} ] } @$packets ],
		[ map { [ $names[$_], $_ + 1 ] } 0 .. $#names ], 'each packet arrives on its exact channel');
	is(sql(q{SELECT to_regclass('comet.packets') IS NOT NULL}), 't', 'comet.packets is still there');
	sql(q{SELECT pg_notify('GRID:MAIN', 'wrong case')});
	sql(q{SELECT comet.send('Grid:Main', '"right case"')});
	$packets = $s->collect(1, 3);
	is_deeply([ map { $_->{data} } @$packets ], ['right case'], 'a NOTIFY on another case is not delivered');
};

subtest 'the good session was not harmed' => sub {
	ok(!$good_poll->readable(0), 'its poll is still held');
	sql(q{SELECT comet.send('good', '"still fine"')});
	my $res = $good_poll->response(3);
	is_deeply($res && $res->{json}, { rid => $good_poll->{rid},
			packets => [ { channel => 'good', seq => 1, data => 'still fine' } ] }, 'and gets its packet');
	ok($bridge->alive, 'the bridge still runs');
};

done_testing;
