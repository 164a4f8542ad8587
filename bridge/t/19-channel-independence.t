# 19-channel-independence.t — a channel whose delivery waits for the
# database holds up no other channel.  While comet.packets is locked, a
# wake-up without data on "slow" must wait for comet.replay; a plain NOTIFY
# on "fast" must still arrive at once.  Once the lock goes, "slow" delivers
# again, in seq order.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);
use CometTest;

grant('slow', ['subscribe']);
grant('fast', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '10']);
my $s = $bridge->setup(subscribe => ['slow', 'fast'], wait => 8);
is($s->status, 200, 'setup succeeds') or BAIL_OUT('no session');

# the locker: holds comet.packets for LOCK_SECONDS in its own backend
my $LOCK_SECONDS = 6;
my $locker = fork // die "fork: $!";
if ($locker == 0)
{
	eval {
		sql(qq{BEGIN; LOCK TABLE comet.packets IN ACCESS EXCLUSIVE MODE;
			   SELECT pg_sleep($LOCK_SECONDS); COMMIT;}, timeout => 30);
	};
	POSIX::_exit($@ ? 1 : 0);
}
my $locked = wait_until(sub {
	sql(q{SELECT count(*) FROM pg_locks WHERE relation = 'comet.packets'::regclass
		  AND mode = 'AccessExclusiveLock' AND granted}) eq '1' }, 10);
ok($locked, 'comet.packets is locked by another transaction') or BAIL_OUT('no lock');
my $locked_at = time;

# seq 1 announced without data: the bridge must read it from the table
sql(q{SELECT pg_notify('slow', 'comet/1 1')});
ok(wait_until(sub { ($bridge->metrics->{comet_channels_catching_up} // 0) == 1 }, 3),
	'"slow" waits for comet.replay (comet_channels_catching_up 1)');

my $poll = $s->start_poll;
sql(q{SELECT pg_notify('fast', '{"n": 1}')});
my $res = $poll->response(3);
my $answered_at = time;
ok($res && $res->{status} == 200, 'the poll is answered') or diag explain $res;
is_deeply($res && $res->{json}{packets}, [ { channel => 'fast', data => { n => 1 } } ],
	'the packet on "fast" arrives while "slow" waits');
ok($answered_at - $locked_at < $LOCK_SECONDS - 1,
	sprintf('and before the lock is released (%.1f s of %d)', $answered_at - $locked_at, $LOCK_SECONDS));

waitpid($locker, 0);
is($?, 0, 'the locking transaction ended normally');
ok(wait_until(sub { ($bridge->metrics->{comet_channels_catching_up} // -1) == 0 }, 5),
	'once the lock is gone, "slow" no longer waits');

# the forged seq 1 does not exist; real packets on "slow" flow in order again
sql(q{SELECT comet.send('slow', jsonb_build_object('n', i)) FROM generate_series(1, 3) i});
my $packets = $s->collect(3, 5);
is_deeply([ map { "$_->{channel}:" . ($_->{seq} // '-') } @$packets ],
	[ 'slow:1', 'slow:2', 'slow:3' ], '"slow" delivers seqs 1 to 3 in order');

done_testing();
