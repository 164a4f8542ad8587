# 00-command-line.t — the command line: --help and --version answer and exit
# 0 without a database; an unknown option or a bad value is refused with a
# non-zero exit and a message on stderr; configured SQL function names are
# checked at start-up, so a missing function stops the bridge before it
# serves anything.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CometTest;

my $binary = $ENV{COMET_BRIDGE} // 'bridge/comet-bridge';

# Run the bridge with @args for at most 3 s (a bridge that would serve is
# killed then: status -1); returns (wait status, stdout, stderr).
sub run_bridge
{
	my (@args) = @_;
	my $out = "/tmp/comet-cli.$$.out";
	my $err = "/tmp/comet-cli.$$.err";
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $out);
		open(STDERR, '>', $err);
		exec($binary, @args) or POSIX::_exit(127);
	}
	my $deadline = time + 3;
	my $status;
	while (1)
	{
		my $r = waitpid($pid, POSIX::WNOHANG());
		if ($r == $pid) { $status = $?; last; }
		if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); $status = -1; last; }
		select(undef, undef, undef, 0.05);
	}
	my $slurp = sub { open(my $f, '<', $_[0]) or return ''; local $/; my $s = <$f>; $s // '' };
	my ($o, $e) = ($slurp->($out), $slurp->($err));
	unlink $out, $err;
	return ($status, $o, $e);
}

subtest '--help' => sub {
	my ($status, $out, $err) = run_bridge('--help');
	is($status, 0, 'exits 0');
	like($out . $err, qr/--listen/, 'describes --listen');
	like($out . $err, qr/--db/, 'and --db');
	# every option docs/bridge.md documents is in the usage text too
	my $doc = "$FindBin::Bin/../../docs/bridge.md";
	open(my $f, '<', $doc) or die "$doc: $!";
	my @documented = map { /^\| `(--[a-z-]+)/ ? $1 : () } <$f>;
	cmp_ok(scalar @documented, '>', 15, 'docs/bridge.md lists the options');
	my @missing = grep { index($out . $err, $_) < 0 } @documented;
	is_deeply(\@missing, [], 'each of them is described by --help');
};

subtest '--version' => sub {
	my ($status, $out, $err) = run_bridge('--version');
	is($status, 0, 'exits 0');
	like($out . $err, qr/\d+\.\d+/, 'prints a version number');
};

subtest 'an unknown option' => sub {
	my ($status, $out, $err) = run_bridge('--no-such-option');
	ok($status > 0 && ($status & 127) == 0, 'exits non-zero') or diag "status $status";
	like($err, qr/no-such-option|unrecognized|unknown|usage/i, 'says what is wrong on stderr');
};

subtest 'bad option values' => sub {
	for my $args ([ '--wait', 'soon' ], [ '--max-body', '-1' ], [ '--listen', 'nowhere' ],
		[ '--log-level', 'chatty' ], [ '--connection-memory', '100' ],
		[ '--max-connections-per-address', '-5' ], [ '--max-connections-per-address', 'many' ])
	{
		my ($status, $out, $err) = run_bridge(@$args, '--db', bridge_db_conninfo());
		ok($status > 0 && ($status & 127) == 0, "@$args is refused") or diag "status $status: $err";
	}
};

subtest 'a configured function that does not exist' => sub {
	for my $option ('--auth-function', '--authorize-function', '--receive-function', '--session-function')
	{
		my ($status, $out, $err) = run_bridge('--listen', '127.0.0.1:' . CometTest::Bridge::_free_port(), '--db', bridge_db_conninfo(),
			$option, 'no_such_function');
		ok($status > 0 && ($status & 127) == 0, "$option no_such_function stops the bridge")
			or diag "status $status: $err";
		like($err, qr/no_such_function/, 'naming the function');
	}
	my ($status, $out, $err) = run_bridge('--listen', '127.0.0.1:' . CometTest::Bridge::_free_port(), '--db', bridge_db_conninfo(),
		'--receive-function', 'comet.send; DROP TABLE comet.packets');
	ok($status > 0 && ($status & 127) == 0, 'a function name with SQL in it stops the bridge');
	is(sql(q{SELECT to_regclass('comet.packets') IS NOT NULL}), 't', 'and runs none of it');
};

done_testing;
