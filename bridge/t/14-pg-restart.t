# 14-pg-restart.t — the bridge loses its database connections while packets
# stream: its backends (application_name comet-bridge) are terminated
# several times.  It reconnects, LISTENs again and catches up from the
# packet table, so a live session still gets every seq exactly once and in
# order, and new sessions can be set up afterwards.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use CometTest;

my $N = 300;
grant('stream', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '5']);
my $s = $bridge->setup(subscribe => ['stream'], wait => 2);
is($s->status, 200, 'a session on the stream') or BAIL_OUT('no session');

# the sender: one transaction per packet, about 25 ms apart
my $script = join '', map { "SELECT comet.send('stream', '{\"n\": $_}'); SELECT pg_sleep(0.025);\n" } 1 .. $N;
my $sender = fork // die "fork: $!";
if ($sender == 0)
{
	eval { sql($script, timeout => 40) };
	POSIX::_exit($@ ? 1 : 0);
}

# the terminator: end the bridge's backends every 0.8 s, six times
my $terminated = 0;
my $next_kill = time + 1;
my @got;
my $deadline = time + 40;
while (@got < $N && time < $deadline)
{
	if ($terminated < 6 && time >= $next_kill)
	{
		$terminated += sql(q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'comet-bridge' AND datname = current_database()});
		$next_kill = time + 0.8;
	}
	my $poll = $s->start_poll;
	my $res = $poll->response(4);
	$poll->close;
	unless ($res && $res->{status} == 200)
	{
		diag('poll failed: ' . ($res ? "$res->{status} $res->{body}" : 'no answer'));
		last;
	}
	push @got, @{ $res->{json}{packets} // [] };
}
waitpid($sender, 0);
is($? >> 8, 0, 'the sender sent every packet');
cmp_ok($terminated, '>=', 2, "the bridge's backends were terminated ($terminated)");

my @seqs = map { $_->{seq} // ($_->{gap} ? "gap $_->{gap}{from}-$_->{gap}{to}" : 'none') } @got;
is(scalar @got, $N, "$N packets arrived");
is_deeply(\@seqs, [ 1 .. $N ], 'every seq exactly once, in order')
	or diag('got: ' . join(' ', @seqs));
is_deeply([ grep { ($_->{data}{n} // -1) != ($_->{seq} // -2) } @got ], [], 'each with its data');

subtest 'the bridge tells what happened, readably' => sub {
	my $m = $bridge->metrics;
	cmp_ok($m->{comet_database_reconnects_total}, '>=', 2, 'comet_database_reconnects_total counts the reconnects')
		if exists $m->{comet_database_reconnects_total};
	my $log = $bridge->log_text;
	like($log, qr/lost|reconnect|connection/i, 'the log mentions the lost connection');
	my @unreadable = grep { !utf8::decode(my $copy = $_) || /[\x00-\x08\x0b-\x1f\x7f]/ } split /\n/, $log;
	is_deeply(\@unreadable, [], 'every log line is readable text (no stray bytes)');
};

subtest 'after the storm' => sub {
	my $t = wait_until(sub { $bridge->setup(subscribe => ['stream'])->status == 200 }, 10);
	ok($t, 'a new session can be set up');
	my $s2 = $bridge->setup(subscribe => ['stream'], wait => 3);
	my $poll = $s2->start_poll;
	sql(q{SELECT comet.send('stream', '{"n": "last"}')});
	my $res = $poll->response(4);
	is_deeply($res && $res->{json}{packets}, [ { channel => 'stream', seq => $N + 1, data => { n => 'last' } } ],
		'and it gets new packets');
	ok($bridge->alive, 'the bridge still runs');
};

done_testing;
