# CometTest.pm — the harness for comet-bridge's black-box tests (bridge/t/*.t).
#
# A test file talks to a real comet-bridge over real HTTP/1.1 on 127.0.0.1,
# backed by a real PostgreSQL database, exactly as a browser and an
# application would.  This module gives it:
#
#   - a fresh database per test file (CREATE DATABASE on the cluster named
#     by $COMET_TEST_DB, CREATE EXTENSION comet, the documented grants for
#     an unprivileged bridge role), dropped again at the end;
#   - sql() / sql_try(): statements through psql, as the application would;
#   - CometTest::Bridge: starts comet-bridge ($COMET_BRIDGE) on a free port,
#     waits for "listening on", stops it at the end (also when a test dies)
#     and shows the tail of its log when a test failed;
#   - CometTest::Conn: a raw HTTP/1.1 client that can send a request now and
#     read its response later, so a test can hold a long-poll on one
#     connection while it sends on another;
#   - CometTest::Session: a protocol session (sid, rids) with helpers.
#
# Nothing here may hang: every wait has a timeout of a few seconds.  Perl
# core modules only.
#
# Environment:
#   COMET_BRIDGE       the binary (default: bridge/comet-bridge)
#   COMET_TEST_DB      libpq conninfo of a database on a throwaway cluster
#                      where CREATE DATABASE and CREATE EXTENSION comet work
#                      (default: "dbname=postgres" with the PG* variables)
#   COMET_TEST_BRIDGE_USER  role the bridge connects as (default: a role
#                      comet_bridge_test made here with the grants of
#                      docs/sql.md; set it empty to use COMET_TEST_DB's user)
#   COMET_TEST_VERBOSE when set, the bridge log is always shown at the end
#   COMET_TEST_WATCHDOG seconds a test file may run before it is failed
#                      (default 120; every file is meant to take under 60)
package CometTest;

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our @EXPORT = qw(sql sql_try test_db_conninfo bridge_db_conninfo grant
	random_rid encode_json_canonical decode_json_safe wait_until
	start_bridge PSQL);

our $PSQL = '/usr/lib/postgresql/15/bin/psql';
sub PSQL { $PSQL }

$SIG{PIPE} = 'IGNORE';
# Interrupted or timed out: still stop the bridges and drop the database
# (exit runs the END block below).
$SIG{INT} = $SIG{TERM} = sub { Test::More::diag("interrupted by SIG$_[0]") if defined &Test::More::diag; exit 1 };
# A watchdog: no test file may run longer than this, whatever hangs.
our $WATCHDOG = $ENV{COMET_TEST_WATCHDOG} // 120;
$SIG{ALRM} = sub { die "comet test watchdog: the test file ran longer than ${WATCHDOG} s\n" };
alarm $WATCHDOG;

my $JSON = JSON::PP->new->utf8(1)->canonical(1)->allow_nonref(1);

# Canonical JSON text (UTF-8 bytes) of a Perl value (hash keys sorted).
sub encode_json_canonical { $JSON->encode($_[0]) }

# The value of JSON text (UTF-8 bytes), or undef when it is not JSON.
sub decode_json_safe
{
	my ($text) = @_;
	return undef unless defined $text;
	my $value = eval { $JSON->decode($text) };
	return $value;
}

# A random rid below 2^40, as the brief asks of clients.
sub random_rid { int(rand(2**40 - 1000)) + 1 }

# Poll $check every 50 ms until it returns true or $timeout seconds pass;
# returns the last value of $check.
sub wait_until
{
	my ($check, $timeout) = @_;
	$timeout //= 5;
	my $deadline = time + $timeout;
	while (1)
	{
		my $v = $check->();
		return $v if $v || time >= $deadline;
		sleep 0.05;
	}
}

# ---- the database ---------------------------------------------------------

my $ADMIN_CONNINFO = $ENV{COMET_TEST_DB} // 'dbname=postgres';
my $WORKDIR = tempdir('comet-bridge-t.XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $DBNAME;			# this test file's database, once made
my $BRIDGE_USER;	# the role the bridge connects as
my $OWNER_PID = $$;	# only the process that made the database drops it
my $PSQL_CALLS = 0;

sub _psql_run
{
	my ($conninfo, $statement, $timeout) = @_;
	$timeout //= 30;
	# unique per process and call (a forked child shares rand()'s state)
	my $n = "$$." . ++$PSQL_CALLS;
	my ($in, $out, $err) = map { "$WORKDIR/psql.$n.$_" } qw(in out err);
	utf8::encode($statement) if utf8::is_utf8($statement);
	open(my $fh, '>', $in) or die "cannot write $in: $!";
	print $fh $statement;
	close $fh;
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $out);
		open(STDERR, '>', $err);
		$ENV{PGCONNECT_TIMEOUT} = 5;
		exec($PSQL, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
			'-d', $conninfo, '-f', $in) or POSIX::_exit(127);
	}
	my $deadline = time + $timeout;
	my $status;
	while (1)
	{
		my $r = waitpid($pid, WNOHANG);
		if ($r == $pid) { $status = $?; last; }
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			$status = -1;
			last;
		}
		sleep 0.01;
	}
	my $slurp = sub {
		open(my $f, '<', $_[0]) or return '';
		local $/;
		my $s = <$f>;
		close $f;
		return $s // '';
	};
	my ($o, $e) = ($slurp->($out), $slurp->($err));
	unlink $in, $out, $err;
	$e = "psql timed out after ${timeout}s\n$e" if $status == -1;
	chomp $o;
	return ($status == 0, $o, $e);
}

# conninfo of this test file's database for the test itself (superuser).
sub test_db_conninfo
{
	_make_database() unless defined $DBNAME;
	return "$ADMIN_CONNINFO dbname=$DBNAME";
}

# The role the bridge connects as (for GRANT / REVOKE in a test).
sub bridge_role
{
	_make_database() unless defined $DBNAME;
	return $BRIDGE_USER;
}

# conninfo the bridge is given (the unprivileged bridge role).
sub bridge_db_conninfo
{
	my $c = test_db_conninfo();
	$c .= " user=$BRIDGE_USER" if $BRIDGE_USER ne '';
	return $c;
}

# Create the test file's database, the extension and the bridge's role.
sub _make_database
{
	my $base = $0;
	$base =~ s{.*/}{};
	$base =~ s{\.t$}{};
	$base =~ s{[^a-z0-9]+}{_}gi;
	my $name = lc("comet_t_${base}_$$");
	my ($ok, $out, $err) = _psql_run($ADMIN_CONNINFO,
		"DROP DATABASE IF EXISTS $name WITH (FORCE);\nCREATE DATABASE $name;\n");
	die "cannot create the test database (COMET_TEST_DB='$ADMIN_CONNINFO'):\n$err" unless $ok;
	$DBNAME = $name;
	$BRIDGE_USER = $ENV{COMET_TEST_BRIDGE_USER} // 'comet_bridge_test';
	my $setup = "CREATE EXTENSION comet;\n";
	if ($BRIDGE_USER ne '')
	{
		# roles are per cluster: another test file may have made it already
		$setup .= <<"SQL";
DO \$\$ BEGIN
  CREATE ROLE $BRIDGE_USER LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END \$\$;
-- what docs/sql.md says the bridge's role needs
GRANT EXECUTE ON FUNCTION comet.authenticate(jsonb), comet.authorize(text, text, text),
    comet.receive(text, text, text, jsonb), comet.send(text, jsonb),
    comet.replay(text, bigint, integer), comet.last_seq(text), comet.prune(interval)
  TO $BRIDGE_USER;
SQL
	}
	($ok, $out, $err) = _psql_run("$ADMIN_CONNINFO dbname=$DBNAME", $setup);
	die "cannot set up the test database:\n$err" unless $ok;
}

sub _drop_database
{
	return unless defined $DBNAME && $$ == $OWNER_PID;
	_psql_run($ADMIN_CONNINFO, "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE);\n", 20);
	undef $DBNAME;
}

# Run SQL in the test database (psql -X -q -At, ON_ERROR_STOP); returns its
# output (rows one a line, columns separated by |).  Dies on an error.
sub sql
{
	my ($statement, %opts) = @_;
	my ($ok, $out, $err) = _psql_run(test_db_conninfo(), "$statement\n", $opts{timeout});
	die "SQL failed: $statement\n$err" unless $ok;
	return $out;
}

# The same, but returns (ok, output, error text) instead of dying.
sub sql_try
{
	my ($statement, %opts) = @_;
	return _psql_run(test_db_conninfo(), "$statement\n", $opts{timeout});
}

# comet.grant(pattern, actions, subject) as SQL literals (a test's own
# strings, quoted by PostgreSQL's rules).
sub grant
{
	my ($pattern, $actions, $subject) = @_;
	my $q = sub { my $s = shift; return 'NULL' unless defined $s; $s =~ s/'/''/g; "'$s'" };
	my $array = 'ARRAY[' . join(',', map { $q->($_) } @$actions) . ']::text[]';
	sql("SELECT comet.grant(" . $q->($pattern) . ", $array, " . $q->($subject) . ")");
}

# ---- the bridge -------------------------------------------------------------

my @BRIDGES;	# every bridge started, stopped in END

sub start_bridge { CometTest::Bridge->start(@_) }

END
{
	my $status = $?;
	if ($$ == $OWNER_PID)
	{
		my $failed = 0;
		eval { require Test::More; $failed = !Test::More->builder->is_passing; };
		for my $b (@BRIDGES)
		{
			next unless $b;
			$b->show_log if $failed || $ENV{COMET_TEST_VERBOSE};
			$b->kill_now;
		}
		_drop_database();
	}
	$? = $status;
}

package CometTest::Bridge;

use strict;
use warnings;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

# A port on 127.0.0.1 that nothing listens on now.
sub _free_port
{
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp', Listen => 1, ReuseAddr => 1) or die "no free port: $!";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# CometTest::Bridge->start(args => [...], db => conninfo, timeout => s)
# Starts the bridge and waits for "listening on 127.0.0.1:PORT".  Dies (so
# the test file fails at once) when it does not come up.
sub start
{
	my ($class, %opts) = @_;
	my $binary = $ENV{COMET_BRIDGE} // 'bridge/comet-bridge';
	die "no bridge binary at $binary (set COMET_BRIDGE)\n" unless -x $binary;
	my $db = $opts{db} // CometTest::bridge_db_conninfo();
	my $last_error = '';
	for my $attempt (1 .. 3)
	{
		my $port = _free_port();
		my $log = "$WORKDIR/bridge.$port.log";
		my @argv = ($binary, '--listen', "127.0.0.1:$port", '--db', $db,
			'--log-level', $opts{log_level} // 'debug', @{ $opts{args} // [] });
		my $pid = fork // die "fork: $!";
		if ($pid == 0)
		{
			open(STDIN, '<', '/dev/null');
			open(STDOUT, '>>', $log);
			open(STDERR, '>>', $log);
			exec(@argv) or POSIX::_exit(127);
		}
		my $self = bless { pid => $pid, port => $port, log => $log, argv => \@argv }, $class;
		push @BRIDGES, $self;
		my $deadline = time + ($opts{timeout} // 10);
		while (time < $deadline)
		{
			return $self if $self->log_text =~ /listening on 127\.0\.0\.1:$port\b/;
			last unless $self->alive;
			sleep 0.05;
		}
		$last_error = $self->alive ? "no \"listening on\" line within the timeout"
			: "the bridge exited (" . $self->exit_description . ")";
		$last_error .= "\n--- bridge log ---\n" . $self->log_text;
		$self->kill_now;
		last unless $self->log_text =~ /in use/i;	# retry only a port clash
	}
	die "comet-bridge did not start: $last_error\n";
}

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }

# Everything the bridge wrote to stdout and stderr so far.
sub log_text
{
	my ($self) = @_;
	open(my $f, '<', $self->{log}) or return '';
	local $/;
	my $s = <$f>;
	close $f;
	return $s // '';
}

sub show_log
{
	my ($self) = @_;
	my @lines = split /\n/, $self->log_text;
	@lines = @lines[-60 .. -1] if @lines > 60;
	Test::More::diag("--- comet-bridge on port $self->{port} (last lines of its log) ---");
	Test::More::diag($_) for @lines;
}

# True while the process runs (reaps it when it has exited).
sub alive
{
	my ($self) = @_;
	return 0 if defined $self->{status};
	my $r = waitpid($self->{pid}, WNOHANG);
	if ($r == $self->{pid}) { $self->{status} = $?; return 0; }
	return 1;
}

# Waits up to $timeout seconds for the process to exit; returns its wait
# status ($?), or undef if it still runs.
sub wait_exit
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 5);
	while ($self->alive)
	{
		return undef if time > $deadline;
		sleep 0.02;
	}
	return $self->{status};
}

sub exit_description
{
	my ($self) = @_;
	my $s = $self->{status};
	return 'still running' unless defined $s;
	return 'killed by signal ' . ($s & 127) if $s & 127;
	return 'exit status ' . ($s >> 8);
}

sub signal { my ($self, $sig) = @_; kill $sig, $self->{pid} if $self->alive; }

# Stop it: SIGTERM, then SIGKILL after 3 s.
sub kill_now
{
	my ($self) = @_;
	return unless $self->alive;
	kill 'TERM', $self->{pid};
	return if defined $self->wait_exit(3);
	kill 'KILL', $self->{pid};
	$self->wait_exit(3);
}

sub DESTROY { local ($., $@, $!, $^E, $?); $_[0]->kill_now if $_[0]{pid}; }

# A new HTTP connection to the bridge (dies, saying how the bridge is,
# when it cannot connect).
sub connect
{
	my ($self) = @_;
	my $conn = eval { CometTest::Conn->new($self->{port}) };
	return $conn if $conn;
	my $error = $@;
	$self->alive;
	die "${error}comet-bridge: " . $self->exit_description . "\n";
}

# One HTTP request on the bridge's keep-alive connection; returns the
# response (see CometTest::Conn::response) or undef on timeout.
sub http
{
	my ($self, $method, $path, %opts) = @_;
	my $conn = $self->{conn};
	$conn = $self->{conn} = $self->connect if !$conn || $conn->closed_by_peer;
	$conn->send_request($method, $path, $opts{body}, $opts{headers});
	my $res = $conn->response($opts{timeout} // 5);
	$self->{last_eof} = $conn->{eof};
	delete $self->{conn} if !$res || $conn->{eof} || $conn->{broken}
		|| lc($res->{headers}{connection} // '') eq 'close';
	return $res;
}

# POST /comet with a body (a hash/array ref, encoded as JSON, or a raw
# string).  Returns (status, headers, decoded JSON, raw body); status is
# undef when no response came within the timeout (default 5 s).
sub post_comet
{
	my ($self, $body, %opts) = @_;
	$body = CometTest::encode_json_canonical($body) if ref $body;
	my $res = $self->http('POST', $opts{path} // '/comet', body => $body,
		headers => { 'Content-Type' => 'application/json', %{ $opts{headers} // {} } },
		timeout => $opts{timeout});
	unless ($res)
	{
		my $shown = length($body) > 200 ? substr($body, 0, 200) . '...' : $body;
		Test::More::diag($self->{last_eof}
			? "the connection closed without a response to POST $shown"
				. ($self->alive ? '' : ' (comet-bridge: ' . $self->exit_description . ')')
			: "no response to POST $shown within " . ($opts{timeout} // 5) . " s");
		return (undef, {}, undef, undef);
	}
	return ($res->{status}, $res->{headers}, $res->{json}, $res->{body});
}

# POST /comet on a new connection without waiting: returns the connection,
# whose ->response(timeout) reads the answer later.
sub start_comet
{
	my ($self, $body, %opts) = @_;
	$body = CometTest::encode_json_canonical($body) if ref $body;
	my $conn = $self->connect;
	$conn->send_request('POST', $opts{path} // '/comet', $body,
		{ 'Content-Type' => 'application/json', %{ $opts{headers} // {} } });
	return $conn;
}

# Set up a session: setup(subscribe => [...], auth => {...}, wait => n,
# resume => {...}, rid => r).  Returns a CometTest::Session; check its
# ->status (200 when it worked) and ->response.
sub setup
{
	my ($self, %fields) = @_;
	my $rid = delete $fields{rid} // CometTest::random_rid();
	$fields{wait} //= 5;
	delete $fields{wait} if $fields{wait} eq 'none';
	my ($status, $headers, $json, $body) = $self->post_comet({ rid => $rid, %fields });
	return CometTest::Session->new($self, $rid, $status, $headers, $json, $body);
}

# The Prometheus text of GET /metrics as { "name{labels}" => value }.
sub metrics
{
	my ($self) = @_;
	my $res = $self->http('GET', '/metrics') or return {};
	my %m;
	for (split /\n/, $res->{body} // '')
	{
		next if /^#/ || !/\S/;
		$m{$1} = $2 if /^(\S+(?:\{[^}]*\})?)\s+(\S+)/;
	}
	return \%m;
}

package CometTest::Session;

use strict;
use warnings;

sub new
{
	my ($class, $bridge, $rid, $status, $headers, $json, $body) = @_;
	my $self = bless { bridge => $bridge, rid => $rid, status => $status,
		headers => $headers, response => $json, body => $body }, $class;
	$self->{sid} = $json->{sid} if ref $json eq 'HASH';
	return $self;
}

sub sid { $_[0]{sid} }
sub status { $_[0]{status} }
# the decoded answer ({} when it was not JSON)
sub response { ref $_[0]{response} eq 'HASH' ? $_[0]{response} : {} }
sub bridge { $_[0]{bridge} }
# the last rid used, and the next one (which it takes)
sub last_rid { $_[0]{rid} }
sub next_rid { ++$_[0]{rid} }

# A request with the next rid, answered synchronously:
# $s->request(send => [...]) returns (status, headers, json, body).
sub request
{
	my ($self, %fields) = @_;
	my $rid = delete $fields{rid} // $self->next_rid;
	my $timeout = delete $fields{timeout};
	return $self->{bridge}->post_comet({ sid => $self->{sid}, rid => $rid, %fields },
		timeout => $timeout);
}

# A pure poll with the next rid on a new connection, not waited for:
# returns a CometTest::Conn (->response, ->closed_by_peer, ->close) with
# ->{rid} set.
sub start_poll
{
	my ($self, %fields) = @_;
	my $rid = delete $fields{rid} // $self->next_rid;
	my $conn = $self->{bridge}->start_comet({ sid => $self->{sid}, rid => $rid, %fields });
	$conn->{rid} = $rid;
	return $conn;
}

# Poll until $count packets (gaps included) have arrived or $timeout
# seconds have passed; returns the packets (array ref), in order.
sub collect
{
	my ($self, $count, $timeout) = @_;
	my @packets;
	my $deadline = Time::HiRes::time() + ($timeout // 5);
	while (@packets < $count && Time::HiRes::time() < $deadline)
	{
		my $left = $deadline - Time::HiRes::time();
		my $poll = $self->start_poll;
		my $res = $poll->response($left + 1);
		$poll->close;
		last unless $res && $res->{status} == 200 && ref $res->{json} eq 'HASH';
		push @packets, @{ $res->{json}{packets} // [] };
	}
	return \@packets;
}

package CometTest::Conn;

# A raw HTTP/1.1 client connection.  send_request() writes a request;
# response() reads the next response (Content-Length, chunked, or up to
# the connection's end).  Keep-alive: several requests may follow one
# another on one connection.

use strict;
use warnings;
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

sub new
{
	my ($class, $port, $from) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		Proto => 'tcp', Timeout => 5, $from ? (LocalAddr => $from) : ())
		or die "cannot connect to 127.0.0.1:$port: $!\n";
	$sock->blocking(0);
	$sock->autoflush(1);
	return bless { sock => $sock, port => $port, buf => '' }, $class;
}

# Write a request.  $headers is a hash ref; Host and Content-Length are
# added.  A write the peer refused (it may answer early, e.g. 413) is not
# an error: the response says what happened.
sub send_request
{
	my ($self, $method, $path, $body, $headers) = @_;
	my $req = "$method $path HTTP/1.1\r\nHost: 127.0.0.1:$self->{port}\r\n";
	my %h = %{ $headers // {} };
	for my $k (sort keys %h)
	{
		$req .= "$k: $h{$k}\r\n" if defined $h{$k};
	}
	$req .= "Content-Length: " . length($body) . "\r\n" if defined $body;
	$req .= "\r\n";
	$req .= $body if defined $body;
	$self->send_raw($req);
}

# Write bytes as they are (for malformed requests), giving up after 5 s.
sub send_raw
{
	my ($self, $bytes) = @_;
	my $sel = IO::Select->new($self->{sock});
	my $deadline = time + 5;
	while (length $bytes)
	{
		my $n = syswrite($self->{sock}, $bytes);
		if (defined $n) { substr($bytes, 0, $n) = ''; next; }
		if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR)
		{
			return if time > $deadline;
			$sel->can_write(0.1);
			next;
		}
		$self->{broken} = "$!";
		return;
	}
}

# Read what is available within $timeout seconds into the buffer; false on
# timeout, end of stream or error.
sub _fill
{
	my ($self, $deadline) = @_;
	return 0 if $self->{eof};
	my $sel = IO::Select->new($self->{sock});
	while (1)
	{
		my $left = $deadline - time;
		return 0 if $left <= 0;
		next unless $sel->can_read($left > 0.2 ? 0.2 : $left);
		my $n = sysread($self->{sock}, my $chunk, 1 << 20);
		if (!defined $n)
		{
			next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
			$self->{eof} = 1;
			$self->{broken} = "$!";
			return 0;
		}
		if ($n == 0) { $self->{eof} = 1; return 0; }
		$self->{buf} .= $chunk;
		return 1;
	}
}

# The next response, or undef when none came within $timeout seconds (or
# the peer closed the connection first).  A response is a hash ref:
# { status, reason, headers => { lower-case name => value }, body, json }.
sub response
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 5);
	my $end;
	until (($end = index($self->{buf}, "\r\n\r\n")) >= 0)
	{
		return undef unless $self->_fill($deadline);
	}
	my $head = substr($self->{buf}, 0, $end);
	my @lines = split /\r\n/, $head;
	my $status_line = shift @lines;
	my ($status, $reason) = $status_line =~ m{^HTTP/1\.[01] (\d{3}) ?(.*)$}
		or die "not an HTTP response: $status_line\n";
	my %headers;
	for (@lines)
	{
		my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
		$k = lc $k;
		$headers{$k} = exists $headers{$k} ? "$headers{$k}, $v" : $v;
	}
	my $rest = $end + 4;
	my $body;
	if (($headers{'transfer-encoding'} // '') =~ /chunked/i)
	{
		my $pos = $rest;
		$body = '';
		while (1)
		{
			my $eol;
			until (($eol = index($self->{buf}, "\r\n", $pos)) >= 0)
			{
				return undef unless $self->_fill($deadline);
			}
			my $size = hex(substr($self->{buf}, $pos, $eol - $pos));
			while (length($self->{buf}) < $eol + 2 + $size + 2)
			{
				return undef unless $self->_fill($deadline);
			}
			$body .= substr($self->{buf}, $eol + 2, $size);
			$pos = $eol + 2 + $size + 2;
			if ($size == 0)
			{
				# no trailers expected; the final CRLF was counted above
				last;
			}
		}
		substr($self->{buf}, 0, $pos) = '';
	}
	elsif (defined $headers{'content-length'})
	{
		my $len = $headers{'content-length'};
		while (length($self->{buf}) < $rest + $len)
		{
			return undef unless $self->_fill($deadline);
		}
		$body = substr($self->{buf}, $rest, $len);
		substr($self->{buf}, 0, $rest + $len) = '';
	}
	elsif ($status =~ /^(1..|204|304)$/)
	{
		$body = '';
		substr($self->{buf}, 0, $rest) = '';
	}
	else
	{
		1 while $self->_fill($deadline);
		return undef unless $self->{eof};
		$body = substr($self->{buf}, $rest);
		$self->{buf} = '';
	}
	my $json = CometTest::decode_json_safe($body);
	return { status => $status, reason => $reason, headers => \%headers,
		body => $body, json => $json };
}

# True when something (a response or the end of the stream) arrived
# within $timeout seconds, without consuming it.
sub readable
{
	my ($self, $timeout) = @_;
	return 1 if length $self->{buf} || $self->{eof};
	my $sel = IO::Select->new($self->{sock});
	return $sel->can_read($timeout // 0) ? 1 : 0;
}

# True when the peer has closed the connection (reading nothing else).
sub closed_by_peer
{
	my ($self) = @_;
	return 1 if $self->{eof} || $self->{broken};
	return 0 if length $self->{buf};
	return 0 unless IO::Select->new($self->{sock})->can_read(0);
	my $n = sysread($self->{sock}, my $chunk, 65536);
	if (defined $n && $n > 0) { $self->{buf} .= $chunk; return 0; }
	return 0 if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK);
	$self->{eof} = 1;
	return 1;
}

sub close
{
	my ($self) = @_;
	close $self->{sock} if $self->{sock};
	$self->{eof} = 1;
}

1;
