# 27-large-answers.t — answers that share large packets (bridge/answer.h)
# are written whole, whatever room the request's headers left in the
# connection's memory.  libmicrohttpd 0.9.75 aborted the whole process when
# an iovec answer met a request with large headers; the bridge now writes
# such answers through a reader.  Each case: N packets adding up to more
# than 16 KiB, queued for a session, then a poll with a Cookie of C bytes
# (up to just below the 431 limit of --connection-memory 8192).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use CometTest;

grant('p', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '5'], log_level => 'info');
for my $n (1, 8, 16)
{
	for my $cookie (0, 3500, 3700)
	{
		my $s = $bridge->setup(subscribe => ['p'], wait => 5);
		is($s->status, 200, "setup ($n packets, Cookie of $cookie bytes)") or next;
		my $size = int(17000 / $n) + 1;
		sql(qq{BEGIN; SELECT comet.send('p', to_jsonb(repeat('y', $size))) FROM generate_series(1, $n); COMMIT;});
		sleep 0.3;
		my $conn = $bridge->connect;
		$conn->send_request('POST', '/comet?sid=' . $s->sid,
			CometTest::encode_json_canonical({ sid => $s->sid, rid => $s->next_rid }),
			{ 'Content-Type' => 'application/json', $cookie ? (Cookie => 'c=' . ('x' x $cookie)) : () });
		my $res = $conn->response(5);
		my @packets = @{ ($res && ref $res->{json} eq 'HASH' && $res->{json}{packets}) || [] };
		is(scalar(grep { length($_->{data} // '') == $size } @packets), $n,
			"$n packets of $size bytes arrive whole") or diag($res ? "status $res->{status} " . substr($res->{body} // "", 0, 200) : "no answer");
		ok($bridge->alive, 'the bridge runs on') or BAIL_OUT($bridge->log_text);
		$conn->close;
		$s->request(terminate => JSON::PP::true);
	}
}
done_testing;
