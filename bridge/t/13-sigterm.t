# 13-sigterm.t — SIGTERM stops the bridge cleanly: every held poll is
# answered 503 system-shutdown, the session function hears "shutdown" for
# each session, the port closes and the process exits with status 0.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use CometTest;

grant('stop', ['subscribe']);
sql(<<'SQL');
CREATE TABLE presence_log (at timestamptz DEFAULT clock_timestamp(), subject text, sid text,
    event text, channels text[]);
CREATE FUNCTION presence(subject text, sid text, event text, channels text[]) RETURNS void
LANGUAGE sql AS $$ INSERT INTO presence_log (subject, sid, event, channels)
    VALUES (subject, sid, event, channels) $$;
GRANT INSERT ON presence_log TO PUBLIC;
SQL

my $bridge = start_bridge(args => ['--wait', '30', '--session-function', 'presence']);
my @sessions = map { $bridge->setup(subscribe => ['stop'], wait => 30) } 1 .. 3;
is(scalar(grep { $_->status == 200 } @sessions), 3, 'three sessions') or BAIL_OUT('no sessions');
my @polls = map { $_->start_poll } @sessions[0, 1];	# the third holds no poll
ok(!$polls[0]->readable(0.5), 'polls are held');

my $started = time;
$bridge->signal('TERM');
for my $poll (@polls)
{
	my $res = $poll->response(5);
	is($res && $res->{status}, 503, 'a held poll is answered 503');
	is($res && ref $res->{json} eq 'HASH' && $res->{json}{error}, 'system-shutdown', 'system-shutdown');
}
my $status = $bridge->wait_exit(10);
ok(defined $status, 'the bridge exits') or BAIL_OUT('still running');
is($bridge->exit_description, 'exit status 0', 'with status 0');
cmp_ok(time - $started, '<', 10, 'within 10 s');
ok(!eval { $bridge->connect; 1 }, 'the port is closed');

my %shutdown = map { $_ => 1 } split /\n/,
	sql(q{SELECT sid FROM presence_log WHERE event = 'shutdown' AND channels = ARRAY['stop']});
is(scalar(grep { $shutdown{ $_->sid } } @sessions), 3, 'the session function heard "shutdown" for every session');

done_testing;
