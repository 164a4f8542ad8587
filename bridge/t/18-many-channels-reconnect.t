# 18-many-channels-reconnect.t — a session on 40 channels keeps getting
# packets on every one of them after the bridge's database connections are
# cut: every channel is LISTENed again after the reconnect.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

my @channels = map { "many:$_" } 1 .. 40;
grant('many:%', ['subscribe']);
my $bridge = start_bridge(args => ['--wait', '3']);
my $s = $bridge->setup(subscribe => \@channels, wait => 2);
is($s->status, 200, 'a session on 40 channels') or BAIL_OUT('no session');

my $ended = sql(q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	WHERE application_name = 'comet-bridge' AND datname = current_database()});
cmp_ok($ended, '>', 0, "the bridge's backends are terminated ($ended)");
ok(wait_until(sub { ($bridge->metrics->{comet_database_up} // 0) == 1
		&& ($bridge->metrics->{comet_database_reconnects_total} // 0) > 0 }, 15),
	'the bridge reconnects');
sleep 1;	# the LISTENs go one by one after the reconnect

sql(join '', map { "SELECT comet.send('$_', '\"after\"');\n" } @channels);
my $packets = $s->collect(40, 15);
my %seen = map { $_->{channel} => 1 } grep { ($_->{data} // '') eq 'after' } @$packets;
is(scalar(keys %seen), 40, 'a packet arrives on every one of the 40 channels')
	or diag('missing: ' . join(' ', grep { !$seen{$_} } @channels));
ok($bridge->alive, 'the bridge still runs');

done_testing;
