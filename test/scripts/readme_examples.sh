#!/usr/bin/env bash
# Every ```sql example of README.md runs as written in the demo database and
# gives the value its comment states.
#
#   test/scripts/readme_examples.sh [FILE]    (FILE: README.md by default)
#
# Runs against the cluster tools/test.sh started (PG* in the environment),
# from the repo root. It creates the database billing_readme_examples, loads
# tools/demo.sql into it as tools/demo.sh does (CREATE EXTENSION billing and
# the demo data), then runs every fenced ```sql block of FILE, in order, in
# one psql session with SET timezone = 'UTC' (as README "Functions" says),
# and prints one line per statement: PASS (its stated value or error
# checked), RUN (ran, states no value), FAIL (with the error or the value it
# gave), or SKIP (a skipped block, with its reason); then the first failure.
#
# Blocks. Each block runs in its own transaction, rolled back at its end, so
# no block sees what another did; within a block, state carries from one
# statement to the next (e.g. a setting changed and then read). A statement
# that fails does not stop its block (psql's ON_ERROR_ROLLBACK). Statements
# are split at the ';' that ends them (outside quotes and comments); every
# statement must end with ';'. (A block that cannot run inside a
# transaction, e.g. VACUUM, cannot be checked: skip it.)
#
# Stated values. A statement's comment is the '--' comment that ends the
# line of its ';' or, when that line has none, a comment line directly below
# it (for a result too long for the line; so a comment that introduces the
# next statement wants a blank line above it). The comment states a value when
# it is one of these forms, alone or followed by a note in parentheses, as
# in "-- 0.75 (0.15 + 0.60)":
#   a number      -- 0.00075         one row, one column, equal as numeric
#                                    (0.75 = 0.750)
#   a date or a   -- 2026-12-01      equal as an instant (date: midnight;
#   timestamp     -- 2026-03-01 05:00+00    no offset: UTC, the session's)
#   a text        -- 'a ''quoted'' text'    an SQL string literal, equal as
#                                    text
#   NULL          -- (null)
#   a row         -- gpt-4o | 100 | 0.15 | (null)    fields separated by
#                 " | ", each compared as above (other fields as exact
#                 text); one row of as many columns, or at least as many
#                 when the row ends with "..." (the columns after it are not
#                 checked): -- ses | email | 0.0001 | 2011-01-25 ...
# Any other comment is prose and checks nothing ("-- once", "-- all
# replies, each at its day's prices") - except that a comment beginning
# with a digit, a signed digit or a quote must be one of the forms above,
# so that a mistyped value fails instead of being silently unchecked.
# The demo data is dated relative to today: a stated value must not depend
# on its dates (this script runs at the real date, whatever it is).
#
# Expected errors. A statement that raises an ERROR fails the test, unless
# its comment (same rule) begins with ERROR:
#   -- ERROR                          any error
#   -- ERROR 22023                    an error with that SQLSTATE
#   -- ERROR: message                 an error whose message begins with
#   -- ERROR 22023: message           "message" (psql's "ERROR:  message"
#                                     display works as is)
# A statement so marked that succeeds fails the test.
#
# Skipped blocks. A block that cannot run as written in the demo database
# (and cannot be made to by fixing the example) is skipped by an HTML comment,
# invisible on GitHub, as the nearest non-blank line above its fence:
#   <!-- readme-test: skip (needs pg_cron in shared_preload_libraries) -->
# The reason is required and printed. Any other "readme-test:" line is an
# error. Keep skips rare.
set -euo pipefail

readme=${1:-README.md}
db=billing_readme_examples
work=$(mktemp -d)
trap 'rm -rf -- "$work"; dropdb --if-exists "$db" 2>/dev/null || true' EXIT

[[ -f $readme ]] || { echo "readme_examples: $readme not found" >&2; exit 1; }

dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
# The demo database, made by the same file tools/demo.sh runs (its report of
# the demo's figures at the end is not needed here).
if ! psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f tools/demo.sql >"$work/demo.out" 2>&1; then
    echo "  FAIL loading tools/demo.sql:"
    cat "$work/demo.out"
    exit 1
fi

perl - "$readme" "$db" "$work" <<'PERL'
use strict;
use warnings;
use Time::Local qw(timegm);

my ($readme, $db, $work) = @ARGV;
open my $fh, '<', $readme or die "$readme: $!\n";
my @lines = <$fh>;
close $fh;
chomp @lines;

my (@blocks, @stmts, @problems);

# --- the blocks and their markers ------------------------------------------
my %marker_used;
for (my $i = 0; $i < @lines; $i++) {
    next unless $lines[$i] =~ /^```sql\s*$/;
    my $fence = $i + 1;                      # 1-based line of the fence
    my $j = $i + 1;
    $j++ while $j < @lines && $lines[$j] !~ /^```\s*$/;
    if ($j >= @lines) {
        push @problems, [$fence, "```sql block never closed"];
        last;
    }
    my $k = $i - 1;
    $k-- while $k >= 0 && $lines[$k] =~ /^\s*$/;
    my $skip;
    if ($k >= 0 && $lines[$k] =~ /readme-test:/) {
        $marker_used{$k} = 1;
        if ($lines[$k] =~ /^\s*<!--\s*readme-test:\s*skip\s*\((.*\S.*)\)\s*-->\s*$/) {
            $skip = $1;
        } else {
            push @problems, [$k + 1, "unreadable marker (want <!-- readme-test: skip (reason) -->): $lines[$k]"];
        }
    }
    push @blocks, { fence => $fence, first => $i + 2, body => [@lines[$i + 1 .. $j - 1]], skip => $skip };
    $i = $j;
}
for my $k (0 .. $#lines) {
    push @problems, [$k + 1, "readme-test marker not right above a ```sql block"]
        if $lines[$k] =~ /readme-test:/ && !$marker_used{$k};
}

# --- statements ----------------------------------------------------------------
# Where the leading whitespace and comments of a piece of SQL end.
sub code_start {
    my ($s) = @_;
    $s =~ /^(?:\s+|--[^\n]*|\/\*.*?\*\/)*/s;
    return $+[0];
}

for my $b (0 .. $#blocks) {
    my $blk = $blocks[$b];
    next if defined $blk->{skip};
    my $text = join("\n", @{ $blk->{body} }) . "\n";
    my $line_at = sub { $blk->{first} + (substr($text, 0, $_[0]) =~ tr/\n//) };
    my $prev = 0;
    pos($text) = 0;
    while (pos($text) < length $text) {
        if ($text =~ /\G--[^\n]*/gc || $text =~ /\G[Ee]'(?:[^'\\]|\\.|'')*'/gcs
            || $text =~ /\G'(?:[^']|'')*'/gcs || $text =~ /\G"(?:[^"]|"")*"/gcs
            || $text =~ /\G(\$[A-Za-z_]*\$).*?\1/gcs || $text =~ /\G\$\d+/gc
            || $text =~ /\G[A-Za-z_][A-Za-z0-9_\$]*/gc) {
            next;
        }
        if ($text =~ /\G\/\*/gc) {
            my $depth = 1;
            while ($depth && $text =~ /\G(?:.*?)(\/\*|\*\/)/gcs) { $depth += $1 eq '/*' ? 1 : -1 }
            if ($depth) {
                push @problems, [$line_at->(pos($text) // 0), "/* comment never closed"];
                $prev = length $text;
                last;
            }
            next;
        }
        if ($text =~ /\G['"\$]/gc) {
            push @problems, [$line_at->(pos($text) - 1), "quote never closed"];
            $prev = length $text;
            last;
        }
        if ($text =~ /\G;/gc) {
            my $end = pos($text);
            my $sql = substr($text, $prev, $end - $prev);
            my $start = $prev + code_start($sql);
            if ($start == $end - 1) {    # a lone ';'
                $prev = $end;
                next;
            }
            my $semi_line = $line_at->($end - 1);
            # Its comment: after the ';' on the same line, or on the next line.
            my ($rest) = substr($text, $end) =~ /^([^\n]*)/;
            my $comment;
            if ($rest =~ /^\s*--\s?(.*?)\s*$/) {
                $comment = $1;
            } elsif ($rest =~ /^\s*$/) {
                my $next = $semi_line - $blk->{first} + 1;
                $comment = $1 if $next < @{ $blk->{body} } && $blk->{body}[$next] =~ /^\s*--\s?(.*?)\s*$/;
            }
            my @code = grep { /\S/ } split /\n/, substr($text, $start, $end - $start);
            my $shown = $code[0] =~ s/^\s+|\s+$//gr;
            $shown .= ' ...' if @code > 1;
            push @stmts, { id => scalar @stmts, block => $b, line => $line_at->($start), sql => $sql,
                           shown => $shown, comment => $comment };
            push @{ $blk->{stmts} }, $#stmts;
            $prev = $end;
            next;
        }
        $text =~ /\G./gcs;
    }
    my $tail = substr($text, $prev);
    if (code_start($tail) < length $tail) {
        push @problems, [$line_at->($prev + code_start($tail)), "statement without its closing ';'"];
    }
}

# --- what a comment states ----------------------------------------------------
my $num_re = qr/[-+]?\d+(?:\.\d+)?/;
my $time_re = qr/\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[-+]\d\d(?::?\d\d)?)?)?/;

# One value: [kind, data] or undef.
sub value_of {
    my ($s) = @_;
    return ['number', $s] if $s =~ /^$num_re$/;
    return ['time', $s] if $s =~ /^$time_re$/;
    return ['null'] if $s eq '(null)';
    return ['text', $1 =~ s/''/'/gr] if $s =~ /^'((?:[^']|'')*)'$/;
    return;
}

# [kind, ...]: 'error' (state, message), 'value' (v), 'row' (values, more),
# 'prose', 'bad' (why).
sub stated {
    my ($c) = @_;
    return ['prose'] unless defined $c && length $c;
    if ($c =~ /^ERROR\b/) {
        return ['error', $1, $2] if $c =~ /^ERROR(?:\s+([0-9A-Z]{5}))?\s*(?::\s*(.*?))?\s*$/;
        return ['bad', 'an ERROR comment reads ERROR [SQLSTATE][: message]'];
    }
    my $v = $c =~ s/\s+\((?:[^()]|\([^()]*\))*\)$//r;    # a note in parentheses
    for my $cand ($c, $v) {
        my $val = value_of($cand);
        return ['value', $val] if $val;
    }
    if ($c =~ / \| /) {
        my $row = $c;
        my $more = $row =~ s/\s*(?:\|\s*)?\.\.\.$//;
        my @fields = map { s/^\s+|\s+$//gr } split /\|/, $row, -1;
        return ['row', [map { value_of($_) // ['exact', $_] } @fields], $more];
    }
    return ['bad', 'begins like a value but is none of the stated-value forms'] if $c =~ /^(?:[-+]?\d|')/;
    return ['prose'];
}

sub norm_number {
    my ($s) = @_;
    $s =~ s/^\+//;
    my $neg = $s =~ s/^-//;
    my ($i, $f) = split /\./, $s, 2;
    $f //= '';
    $i =~ s/^0+(?=\d)//;
    $f =~ s/0+$//;
    my $r = length $f ? "$i.$f" : $i;
    return $neg && $r ne '0' ? "-$r" : $r;
}

# A date or timestamp as UTC epoch seconds (with any fraction), or undef.
sub instant {
    my ($s) = @_;
    return unless $s =~ /^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?(?:([-+])(\d\d)(?::?(\d\d))?)?)?$/;
    my $t = eval { timegm($6 // 0, $5 // 0, $4 // 0, $3, $2 - 1, $1) };
    return unless defined $t;
    $t -= ($8 eq '+' ? 1 : -1) * ($9 * 3600 + ($10 // 0) * 60) if defined $8;
    my $frac = ($7 // '') =~ s/0+$//r;
    $frac = '' if $frac eq '.';
    return "$t$frac";
}

# undef if GOT (undef for NULL) matches the value, else why not.
sub mismatch {
    my ($val, $got) = @_;
    my ($kind, $want) = @$val;
    my $g = defined $got ? $got : '(null)';
    return defined $got ? "got $g, want NULL" : undef if $kind eq 'null';
    return "got NULL, want $want" unless defined $got;
    if ($kind eq 'number') {
        return "got $g, not a number" unless $got =~ /^$num_re$/;
        return norm_number($got) eq norm_number($want) ? undef : "got $g, want $want";
    }
    if ($kind eq 'time') {
        my $gi = instant($got);
        return "got $g, not a date or timestamp" unless defined $gi;
        return $gi eq instant($want) ? undef : "got $g, want $want";
    }
    return $got eq $want ? undef : "got '$g', want '$want'";    # text, exact
}

# --- the psql script -------------------------------------------------------------
open my $run, '>', "$work/run.sql" or die "$work/run.sql: $!\n";
print $run <<'SQL';
\set QUIET on
\set ON_ERROR_ROLLBACK on
\pset format unaligned
\pset tuples_only on
\pset fieldsep '\x1f'
\pset recordsep '\x1e'
\pset null '\x1a'
SET timezone = 'UTC';
SQL
for my $blk (@blocks) {
    next if defined $blk->{skip} || !$blk->{stmts};
    print $run "BEGIN;\n";
    for my $id (@{ $blk->{stmts} }) {
        print $run "\\echo \@\@S $id\n$stmts[$id]{sql}\n\\echo \@\@E $id :ERROR :SQLSTATE :ROW_COUNT\n",
                   "\\if :ERROR\n\\echo :LAST_ERROR_MESSAGE\n\\endif\n";
    }
    print $run "ROLLBACK;\n";
}
close $run;

my $rc = system("psql -X -d '$db' -f '$work/run.sql' >'$work/run.out' 2>'$work/run.err'");
if ($rc != 0) {
    print "  FAIL psql exited with status ", $rc >> 8, ":\n";
    system("cat '$work/run.err'");
    exit 1;
}
open my $out, '<', "$work/run.out" or die "$work/run.out: $!\n";
my $output = do { local $/; <$out> };
close $out;
while ($output =~ /^\@\@S (\d+)\n(.*?)^\@\@E \1 (\S+) (\S*) (\d+)\n(.*?)(?=^\@\@S |\z)/msg) {
    my ($s, $res, $error, $sqlstate, $rows, $message) = ($stmts[$1], $2, $3, $4, $5, $6);
    @$s{qw(error sqlstate rows message ran)} = ($error eq 'true', $sqlstate, $rows, $message =~ s/\s+$//r, 1);
    $res =~ s/\n\z//;
    $s->{result} = [map { [map { $_ eq "\x1a" ? undef : $_ } split /\x1f/, $_, -1] } split /\x1e/, $res, -1];
    $s->{result} = [] if $s->{rows} == 0;
}

# --- the report -------------------------------------------------------------------
my ($checked, $ran, $failed, $skipped) = (0, 0, 0, 0);
my @report;    # [status, line, what, detail, seq], printed in README order
sub line_out { push @report, [@_[0 .. 3], scalar @report] }
line_out('FAIL', $_->[0], $_->[1]) for @problems;
for my $blk (@blocks) {
    if (defined $blk->{skip}) {
        $skipped++;
        line_out('SKIP', $blk->{fence}, "block ($blk->{skip})");
        next;
    }
    for my $id (@{ $blk->{stmts} // [] }) {
        my $s = $stmts[$id];
        my $st = stated($s->{comment});
        my $what = $s->{shown};
        $what .= "   -- $s->{comment}" if $st->[0] ne 'prose';
        if (!$s->{ran}) {
            line_out('FAIL', $s->{line}, $what, 'did not run (psql took it for part of another statement: a quote or a backslash command?)');
            next;
        }
        my $err = "ERROR $s->{sqlstate}: $s->{message}";
        if ($st->[0] eq 'bad') {
            line_out('FAIL', $s->{line}, $what, "unreadable stated value: $st->[1]");
        } elsif ($st->[0] eq 'error') {
            my ($state, $msg) = @$st[1, 2];
            my $why = !$s->{error} ? 'ran without the stated error'
                    : defined $state && $state ne $s->{sqlstate} ? "wrong error: $err"
                    : defined $msg && length $msg && index($s->{message}, $msg) != 0 ? "wrong error: $err"
                    : undef;
            $checked++;
            line_out($why ? 'FAIL' : 'PASS', $s->{line}, $what, $why);
        } elsif ($s->{error}) {
            line_out('FAIL', $s->{line}, $what, $err);
        } elsif ($st->[0] eq 'prose') {
            $ran++;
            line_out('RUN', $s->{line}, $what);
        } else {
            $checked++;
            my $rows = $s->{result};
            my $why;
            if (@$rows != 1) {
                $why = sprintf 'want one row, got %d', scalar @$rows;
            } elsif ($st->[0] eq 'value') {
                $why = @{ $rows->[0] } == 1 ? mismatch($st->[1], $rows->[0][0])
                     : sprintf 'want one column, got %d: %s', scalar @{ $rows->[0] },
                               join(' | ', map { $_ // '(null)' } @{ $rows->[0] });
            } else {
                my ($vals, $more) = @$st[1, 2];
                my @got = @{ $rows->[0] };
                my $shown = join(' | ', map { $_ // '(null)' } @got);
                if (@got < @$vals || (!$more && @got > @$vals)) {
                    $why = sprintf 'want %s%d columns, got %d: %s', $more ? 'at least ' : '',
                                   scalar @$vals, scalar @got, $shown;
                } else {
                    for my $f (0 .. $#$vals) {
                        my $m = $vals->[$f][0] eq 'exact'
                              ? ((defined $got[$f] && $got[$f] eq $vals->[$f][1]) ? undef
                                 : sprintf("got '%s', want '%s'", $got[$f] // '(null)', $vals->[$f][1]))
                              : mismatch($vals->[$f], $got[$f]);
                        if ($m) { $why = sprintf 'column %d: %s (row: %s)', $f + 1, $m, $shown; last }
                    }
                }
            }
            line_out($why ? 'FAIL' : 'PASS', $s->{line}, $what, $why);
        }
    }
}
my $first_failure;
for my $r (sort { $a->[1] <=> $b->[1] || $a->[4] <=> $b->[4] } @report) {
    my ($status, $line, $what, $detail) = @$r;
    my $l = sprintf "  %-4s %s:%d  %s", $status, $readme, $line, $what;
    $l .= "\n         $detail" if defined $detail && length $detail;
    print "$l\n";
    if ($status eq 'FAIL') {
        $failed++;
        $first_failure //= $l;
    }
}
printf "%d statements checked against their stated value or error, %d ran (no stated value), %d blocks skipped, %d failed\n",
       $checked, $ran, $skipped, $failed;
if (!@blocks) {
    print "  FAIL no ```sql block in $readme\n";
    exit 1;
}
if ($failed) {
    print "first failure:\n$first_failure\n";
    exit 1;
}
PERL
