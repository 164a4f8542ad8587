# 25-session-ids.t — session ids are unique and unguessable: 100,000
# setups (pipelined on keep-alive connections; COMET_TEST_SIDS=N for
# another count, e.g. 10000 on a slow machine) give 100,000 different sids,
# each the bridge's node id, a dot and at least 22 (here 24) URL-safe
# characters; over the random parts, decoded to bits, every character
# position is uniformly distributed (chi-square), every bit is balanced,
# consecutive sids differ in about half their bits, and no two share a
# prefix longer than chance allows.  A sid one character off is 404.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use MIME::Base64 qw(decode_base64);
use POSIX qw(ceil);
use Time::HiRes qw(time);
use Test::More;
use CometTest;

my $N = $ENV{COMET_TEST_SIDS} // 100_000;
my $CONNS = 8;
my $BATCH = 100;

my $bridge = start_bridge(log_level => 'warn',
	args => ['--wait', '5', '--inactivity', '2', '--max-sessions', $N + 1000]);

# $n setups without subscriptions, pipelined: returns the sids.
sub setups
{
	my ($b, $n) = @_;
	my $body = '{"rid":1,"subscribe":[]}';
	my $req = "POST /comet HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
	my @conns = map { $b->connect } 1 .. $CONNS;
	my @sids;
	my $bad = 0;
	my $left = $n;
	while ($left > 0)
	{
		my @sent;
		for my $c (@conns)
		{
			my $k = $left < $BATCH ? $left : $BATCH;
			$left -= $k;
			$c->send_raw($req x $k) if $k;
			push @sent, $k;
		}
		for my $i (0 .. $#conns)
		{
			for (1 .. $sent[$i])
			{
				my $res = $conns[$i]->response(30);
				if ($res && $res->{status} == 200 && ($res->{body} =~ /"sid":"([^"]*)"/))
				{
					push @sids, $1;
				}
				else
				{
					$bad++;
					diag('a setup failed: ' . ($res ? "$res->{status} $res->{body}" : 'no answer')) if $bad <= 3;
				}
			}
		}
	}
	$_->close for @conns;
	return (\@sids, $bad);
}

my $t = time;
my ($sids, $bad) = setups($bridge, $N);
my $took = time - $t;
diag(sprintf('%d setups in %.1f s (%.0f a second)', scalar @$sids, $took, @$sids / ($took || 1)));
is($bad, 0, "all $N setups succeeded");
is(scalar @$sids, $N, "$N sids");

my %seen;
my @dups = grep { $seen{$_}++ } @$sids;
is(scalar @dups, 0, 'every sid differs from every other') or diag("duplicates: @dups[0 .. ($#dups < 4 ? $#dups : 4)]");

# node id, dot, random part
my %prefixes;
my @random;
my @malformed;
for my $sid (@$sids)
{
	if ($sid =~ /^(?:([A-Za-z0-9-]+)\.)?([A-Za-z0-9_-]+)$/)
	{
		$prefixes{ $1 // '' }++;
		push @random, $2;
	}
	else
	{
		push @malformed, $sid;
	}
}
is(scalar @malformed, 0, 'every sid is [NODE.]RANDOM in URL-safe characters') or diag("@malformed[0 .. 2]");
is(scalar keys %prefixes, 1, 'with one node prefix for the bridge') or diag(join ' ', keys %prefixes);
my %lengths;
$lengths{ length $_ }++ for @random;
is_deeply([ keys %lengths ], [24], 'the random part is 24 characters (144 bits), always');
ok(!grep({ length $_ < 22 } @random), 'at least 22 characters');
my %rseen;
is(scalar(grep { $rseen{$_}++ } @random), 0, 'the random parts alone are unique too');

# ---- randomness -------------------------------------------------------------------

my @alphabet = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_');
my %value;
@value{@alphabet} = 0 .. 63;
my $L = 24;

subtest 'every character position is uniform over the 64 characters (chi-square)' => sub {
	my @count = map { [ (0) x 64 ] } 1 .. $L;
	for my $r (@random)
	{
		my $p = 0;
		$count[ $p++ ][ $value{$_} ]++ for split //, $r;
	}
	my $expected = @random / 64;
	# 63 degrees of freedom: mean 63, sd 11.2; 140 is about 7 sd
	my @chi;
	for my $p (0 .. $L - 1)
	{
		my $chi = 0;
		$chi += ($_ - $expected)**2 / $expected for @{ $count[$p] };
		push @chi, $chi;
	}
	my @over = grep { $chi[$_] > 140 } 0 .. $L - 1;
	diag('chi-square per position (63 df, mean 63): ' . join(' ', map { sprintf '%.0f', $_ } @chi));
	is(scalar @over, 0, 'no position is skewed (chi-square under 140)')
		or diag('skewed positions: ' . join(', ', map { "$_ ($chi[$_])" } @over));

	# bits: each of the 144 is set in half the sids
	my @ones = (0) x ($L * 6);
	for my $p (0 .. $L - 1)
	{
		for my $v (0 .. 63)
		{
			for my $k (0 .. 5)
			{
				$ones[ $p * 6 + $k ] += $count[$p][$v] if $v & (32 >> $k);
			}
		}
	}
	my $half = @random / 2;
	my $sd = sqrt(@random) / 2;
	my @skew = map { ($ones[$_] - $half) / $sd } 0 .. $#ones;
	my ($worst) = sort { abs($b) <=> abs($a) } @skew;
	diag(sprintf('bit balance: the worst of 144 bits is %.1f sd from half', $worst));
	is(scalar(grep { abs($_) > 6 } @skew), 0, 'every bit is set in half the sids (within 6 sd)');
};

subtest 'consecutive sids are unrelated, and no two share a long prefix' => sub {
	my @bytes = map { (my $b64 = $_) =~ tr/-_/+\//; decode_base64($b64) } @random;
	is(length $bytes[0], 18, 'a random part decodes to 18 bytes');
	my $sum = 0;
	$sum += unpack('%32b*', $bytes[$_] ^ $bytes[ $_ - 1 ]) for 1 .. $#bytes;
	my $mean = $sum / $#bytes;
	my $sd = 6 / sqrt($#bytes);		# one pair: binomial(144, 1/2), sd 6
	diag(sprintf('consecutive sids differ in %.2f of 144 bits on average (72 expected)', $mean));
	cmp_ok(abs($mean - 72), '<', 8 * $sd, 'about half the bits (within 8 sd)');

	my @sorted = sort @random;
	my $longest = 0;
	for my $i (1 .. $#sorted)
	{
		my $x = $sorted[ $i - 1 ] ^ $sorted[$i];
		$x =~ /^(\0*)/;
		$longest = length $1 if length $1 > $longest;
	}
	# the longest shared prefix of N random strings over 64 characters is
	# about log64(N^2 / 2); 3 more happens with probability under 1e-5
	my $limit = ceil(log(@sorted**2 / 2) / log(64)) + 3;
	diag("the longest prefix two sids share: $longest characters");
	cmp_ok($longest, '<=', $limit, "no two share more than $limit leading characters");
};

subtest 'a sid one character off is not a session' => sub {
	my $s = $bridge->setup(subscribe => [], wait => 1);
	is($s->status, 200, 'a session') or return;
	my $sid = $s->sid;
	for my $pos (length($sid) - 1, length($sid) - 12, length($sid) - 24)
	{
		my $c = substr($sid, $pos, 1);
		(my $other = $sid) =~ s/^(.{$pos})./$1 . ($c eq 'A' ? 'B' : 'A')/e;
		my ($status, undef, $json) = $bridge->post_comet({ sid => $other, rid => $s->last_rid + 1 });
		is($status, 404, "character $pos changed: 404");
	}
	my ($status) = $s->request(timeout => 3);
	is($status, 200, 'the real one works');
};

subtest 'with --node-id the sid is NODE.random' => sub {
	my $named = start_bridge(log_level => 'warn', args => ['--wait', '5', '--inactivity', '2', '--node-id', 'n-1']);
	my ($sids, $bad) = setups($named, 1000);
	is($bad, 0, '1,000 setups');
	is(scalar(grep { /^n-1\.[A-Za-z0-9_-]{24}$/ } @$sids), 1000, 'every sid is n-1. and 24 random characters');
	my %s;
	is(scalar(grep { $s{$_}++ } (map { s/^n-1\.//r } @$sids), @random), 0,
		'no random part repeats one of the other bridge\'s');
	$named->kill_now;
};

ok($bridge->alive, 'the bridge still runs');
done_testing;
