# 17-postgres-restart.t — PostgreSQL itself is restarted (fast, then
# immediate shutdown) while packets stream.  The bridge reconnects, LISTENs
# again and catches up from the packet table: a live session ends with every
# seq that committed, exactly once and in order.
#
# COMET_TEST_RESTART is a command that restarts the test cluster (make test
# sets it); a sender that loses its connection retries, so a packet whose
# commit was cut short may commit twice — each copy has its own seq, and
# the check is on seqs: 1 .. comet.last_seq, each once, in order.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use CometTest;

plan skip_all => 'COMET_TEST_RESTART names no restart command' unless $ENV{COMET_TEST_RESTART};

my $N = 120;
grant('restart', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '5']);
my $s = $bridge->setup(subscribe => ['restart'], wait => 2);
is($s->status, 200, 'a session on the channel') or BAIL_OUT('no session');

# the sender: one transaction per packet, retried while the server is away
my $sender = fork // die "fork: $!";
if ($sender == 0)
{
	for my $n (1 .. $N)
	{
		my $deadline = time + 30;
		until ((sql_try("SELECT comet.send('restart', '{\"n\": $n}')", timeout => 10))[0])
		{
			POSIX::_exit(1) if time > $deadline;
			sleep 0.1;
		}
		sleep 0.02;
	}
	POSIX::_exit(0);
}

# the restarts: fast after a second, immediate after three
my @restarts = ([ 1, 'fast' ], [ 3, 'immediate' ]);
my $started = time;
my @got;
my $deadline = time + 60;
my $sender_done = 0;
while (time < $deadline)
{
	if (@restarts && time - $started >= $restarts[0][0])
	{
		my $mode = (shift @restarts)->[1];
		is(system("$ENV{COMET_TEST_RESTART} $mode"), 0, "PostgreSQL restarted ($mode)");
	}
	my $poll = $s->start_poll;
	my $res = $poll->response(6);
	$poll->close;
	unless ($res && $res->{status} == 200)
	{
		diag('poll failed: ' . ($res ? "$res->{status} $res->{body}" : 'no answer'));
		last;
	}
	push @got, @{ $res->{json}{packets} // [] };
	if (!$sender_done && waitpid($sender, WNOHANG) == $sender)
	{
		$sender_done = 1;
		is($? >> 8, 0, 'the sender committed every packet');
	}
	last if $sender_done && !@restarts
		&& @got >= ((sql_try(q{SELECT comet.last_seq('restart')}))[1] || 0);
}
unless ($sender_done)
{
	waitpid($sender, 0);
	is($? >> 8, 0, 'the sender committed every packet');
}

my $last = sql(q{SELECT comet.last_seq('restart')});
cmp_ok($last, '>=', $N, "at least $N packets committed ($last)");
my @seqs = map { $_->{seq} // ($_->{gap} ? "gap $_->{gap}{from}-$_->{gap}{to}" : 'none') } @got;
is_deeply(\@seqs, [ 1 .. $last ], 'every committed seq arrived exactly once, in order')
	or diag('got: ' . join(' ', @seqs));
ok($bridge->alive, 'the bridge still runs');

done_testing;
