package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf16"

	"github.com/keyward/keyward"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scanFormat is the format of the keys the scan tests write into files.
func scanFormat(t *testing.T) keyward.KeyFormat {
	t.Helper()
	f, err := keyward.NewKeyFormat("triq_")
	require.NoError(t, err)
	return f
}

// newKey returns a fresh key of f with a valid checksum.
func newKey(t *testing.T, f keyward.KeyFormat) string {
	t.Helper()
	k, err := f.Generate()
	require.NoError(t, err)
	return k
}

// badKey returns key with its last character changed: the right shape, a
// wrong checksum.
func badKey(key string) string {
	last := byte('a')
	if key[len(key)-1] == 'a' {
		last = 'b'
	}
	return key[:len(key)-1] + string(last)
}

// runScan runs `keyward scan args…` in process and returns its stdout,
// stderr and exit status.
func runScan(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run(context.Background(), append([]string{"--prefix", "triq_", "scan"}, args...), &out, &errs)
	return out.String(), errs.String(), code
}

// report is the line scan prints for key found on line of path.
func report(f keyward.KeyFormat, path string, line int, key string) string {
	return fmt.Sprintf("%s:%d: %s\n", path, line, f.Hint(key))
}

func writeFile(t *testing.T, path string, data string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	require.NoError(t, os.WriteFile(path, []byte(data), 0o600))
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symbolic links unavailable: %v", err)
	}
}

func TestScanLongLineDoesNotStopTheWalk(t *testing.T) {
	f := scanFormat(t)
	k1, k2, k3, k4 := newKey(t, f), newKey(t, f), newKey(t, f), newKey(t, f)
	dir := t.TempDir()
	long := filepath.Join(dir, "a.min.js")
	writeFile(t, long, "// bundle\nvar k=\""+k1+"\";"+strings.Repeat("=", 17<<20)+"\""+k2+"\"\n"+k3+"\n")
	later := filepath.Join(dir, "b.env")
	writeFile(t, later, "API_KEY="+k4+"\n")

	out, errs, code := runScan(t, dir)
	assert.Equal(t, 1, code, "keys found: exit 1")
	assert.Equal(t, report(f, long, 2, k1)+report(f, long, 2, k2)+report(f, long, 3, k3)+report(f, later, 1, k4), out,
		"keys on and after a line over 16 MiB are found, and the walk goes on to the next file")
	assert.NotContains(t, errs, "cannot scan")
}

func TestScanFindsKeysAcrossChunkEdges(t *testing.T) {
	f := scanFormat(t)
	// Keys over three chunks, with separators of every length from 1 to
	// the key's, so that chunk edges fall at many offsets inside keys.
	var text strings.Builder
	var want []string
	line := 1
	for text.Len() < 3*chunkSize {
		k := newKey(t, f)
		text.WriteString(k)
		want = append(want, fmt.Sprintf("%d:%s", line, k))
		sep := 1 + len(want)%f.Len()
		if len(want)%7 == 0 {
			text.WriteString("\n")
			line++
		} else {
			text.WriteString(strings.Repeat(" ", sep))
		}
	}
	for name, r := range map[string]func() io.Reader{
		"whole reads":    func() io.Reader { return strings.NewReader(text.String()) },
		"one-byte reads": func() io.Reader { return iotest.OneByteReader(strings.NewReader(text.String())) },
		"half reads":     func() io.Reader { return iotest.HalfReader(strings.NewReader(text.String())) },
		"error with EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(text.String())) },
	} {
		var got []string
		err := scanText(r(), f, func(line int, key string) { got = append(got, fmt.Sprintf("%d:%s", line, key)) })
		require.NoError(t, err, name)
		assert.Equal(t, want, got, name)
	}
}

func TestScanFollowsSymlinkArguments(t *testing.T) {
	f := scanFormat(t)
	k1, k2 := newKey(t, f), newKey(t, f)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "real", "secret.env"), "API_KEY="+k1+"\n")
	writeFile(t, filepath.Join(dir, "real", "conf", "app.yaml"), "key: "+k2+"\n")
	fileLink, dirLink := filepath.Join(dir, "secret.env"), filepath.Join(dir, "conf")
	symlink(t, filepath.Join("real", "secret.env"), fileLink)
	symlink(t, filepath.Join("real", "conf"), dirLink)

	out, errs, code := runScan(t, fileLink, dirLink)
	assert.Equal(t, 1, code, "keys found: exit 1; stderr: %s", errs)
	assert.Equal(t, report(f, fileLink, 1, k1)+report(f, filepath.Join(dirLink, "app.yaml"), 1, k2), out,
		"a link named as an argument is followed, to a file or to a directory")
}

func TestScanDoesNotFollowSymlinksInsideDirectories(t *testing.T) {
	f := scanFormat(t)
	dir, elsewhere := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(elsewhere, "secret.env"), "API_KEY="+newKey(t, f)+"\n")
	writeFile(t, filepath.Join(dir, "README"), "nothing here\n")
	symlink(t, elsewhere, filepath.Join(dir, "elsewhere"))
	symlink(t, filepath.Join(elsewhere, "secret.env"), filepath.Join(dir, "secret.env"))
	symlink(t, ".", filepath.Join(dir, "loop"))

	out, errs, code := runScan(t, dir)
	assert.Equal(t, 0, code, "links met in the walk are not followed, so it neither leaves the tree nor loops: %s%s", out, errs)
	assert.Empty(t, out)
}

func TestScanReportsWhatItCannotReadAndGoesOn(t *testing.T) {
	f := scanFormat(t)
	k := newKey(t, f)
	dir, clean := t.TempDir(), t.TempDir()
	found := filepath.Join(dir, "b.env")
	writeFile(t, found, "API_KEY="+k+"\n")
	writeFile(t, filepath.Join(clean, "README"), "nothing here\n")
	missing := filepath.Join(dir, "a-missing.env")
	dangling := filepath.Join(dir, "a-dangling.env")
	symlink(t, missing, dangling)

	out, errs, code := runScan(t, missing, dangling, dir)
	assert.Equal(t, 1, code)
	assert.Equal(t, report(f, found, 1, k), out, "the paths after an unreadable one are scanned")
	assert.Contains(t, errs, "keyward: cannot scan "+missing+": ")
	assert.Contains(t, errs, "keyward: cannot scan "+dangling+": ")
	assert.Contains(t, errs, "2 path(s) could not be scanned")

	out, errs, code = runScan(t, missing, clean)
	assert.Equal(t, 1, code, "no key found, but the scan is incomplete: exit 1")
	assert.Empty(t, out)
	assert.Contains(t, errs, "keyward: cannot scan "+missing+": ")
	assert.Contains(t, errs, "1 path(s) could not be scanned")
}

func TestScanReportsAnUnreadableFileInAWalk(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	f := scanFormat(t)
	k := newKey(t, f)
	dir := t.TempDir()
	locked := filepath.Join(dir, "a.env")
	writeFile(t, locked, "nothing here\n")
	require.NoError(t, os.Chmod(locked, 0))
	found := filepath.Join(dir, "b.env")
	writeFile(t, found, "API_KEY="+k+"\n")

	out, errs, code := runScan(t, dir)
	assert.Equal(t, 1, code)
	assert.Equal(t, report(f, found, 1, k), out, "the walk goes on past a file it cannot open")
	assert.Contains(t, errs, "keyward: cannot scan "+locked+": ")
}

func TestScanFindsKeysNextToLettersAndDigits(t *testing.T) {
	f := scanFormat(t)
	var k [6]string
	for i := range k {
		k[i] = newKey(t, f)
	}
	path := filepath.Join(t.TempDir(), "config")
	writeFile(t, path, strings.Join([]string{
		"x" + k[0],
		k[1] + "123",
		"abc" + k[2] + "def",
		k[3] + k[4],
		"0" + k[5] + "Z",
		"x" + badKey(newKey(t, f)) + "9", // wrong checksum
		"triq_" + strings.Repeat("A", 30) + "000000",        // wrong checksum
		"abc" + newKey(t, f)[:f.Len()-1] + "_" + "triq_abc", // cut short
	}, "\n")+"\n")

	out, errs, code := runScan(t, path)
	assert.Equal(t, 1, code, errs)
	assert.Equal(t, report(f, path, 1, k[0])+report(f, path, 2, k[1])+report(f, path, 3, k[2])+
		report(f, path, 4, k[3])+report(f, path, 4, k[4])+report(f, path, 5, k[5]), out,
		"a key is found next to letters or digits; only strings with a valid checksum are reported")
	assert.Contains(t, errs, "6 key(s) found")

	// Test keys are found too, next to text as live ones.
	test, err := f.GenerateFor(keyward.EnvTest)
	require.NoError(t, err)
	writeFile(t, path, "x"+test+"y\n")
	out, errs, code = runScan(t, path)
	assert.Equal(t, 1, code, errs)
	assert.Equal(t, report(f, path, 1, test), out)
}

// encodeUTF16 returns s in UTF-16 of the given byte order, after a
// byte-order mark if bom.
func encodeUTF16(s string, order byteOrder, bom bool) string {
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xfeff}, units...)
	}
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		if order == bigEndian {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

func TestScanReadsUTF16(t *testing.T) {
	f := scanFormat(t)
	dir := t.TempDir()
	var want strings.Builder
	for _, tc := range []struct {
		name  string
		order byteOrder
		bom   bool
	}{
		{"1-le-bom.ps1", littleEndian, true},
		{"2-be-bom.ps1", bigEndian, true},
		{"3-le.ps1", littleEndian, false},
		{"4-be.ps1", bigEndian, false},
	} {
		k := newKey(t, f)
		path := filepath.Join(dir, tc.name)
		writeFile(t, path, encodeUTF16("# clé 🔑\r\n$key = \""+k+"\"\r\n", tc.order, tc.bom))
		want.WriteString(report(f, path, 2, k))
	}
	// Binary files, NUL bytes at odd and even offsets, are still skipped.
	writeFile(t, filepath.Join(dir, "z.bin"), "\x00\x01\x00\x00\x02\x00"+newKey(t, f))

	out, errs, code := runScan(t, dir)
	assert.Equal(t, 1, code, errs)
	assert.Equal(t, want.String(), out, "UTF-16 text, with or without a byte-order mark, is read")
}

func TestUTF16ReaderDecodes(t *testing.T) {
	long := strings.Repeat("a", utf16Block/2-1) // the next pair straddles two blocks
	for name, tc := range map[string]struct {
		in    string
		order byteOrder
		want  string
	}{
		"pair across blocks":  {encodeUTF16(long+"🔑b", littleEndian, false), littleEndian, long + "🔑b"},
		"unpaired surrogates": {"\x00a\xd8\x3d\x00x\xdd\x11\xd8\x3d", bigEndian, "a\uFFFDx\uFFFD\uFFFD"},
		"odd last byte":       {"a\x00b\x00c", littleEndian, "ab"},
	} {
		var got bytes.Buffer
		_, err := got.ReadFrom(newUTF16Reader(strings.NewReader(tc.in), tc.order))
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, got.String(), name)
	}
}

// TestScanStaged: --staged scans the index's content — not the working
// tree's — of the files staged for the next commit, whatever their names,
// and passes on an empty staged set.
func TestScanStaged(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	f := scanFormat(t)
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	scan := func() (string, string, int) {
		t.Helper()
		cmd := exec.Command(binary, "--prefix", "triq_", "scan", "--staged")
		cmd.Dir = repo
		var out, errs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errs
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return out.String(), errs.String(), code
	}
	git("init", "-q")

	out, errs, code := scan()
	assert.Equal(t, 0, code, "nothing staged, no commit yet: %s", errs)
	assert.Empty(t, out)

	staged, unstaged, gone := newKey(t, f), newKey(t, f), newKey(t, f)
	writeFile(t, filepath.Join(repo, "dir with space", "my config.env"), "# settings\nAPI_KEY="+staged+"\n")
	writeFile(t, filepath.Join(repo, "tab\tname.txt"), "a key that leaves: "+gone+"\n")
	writeFile(t, filepath.Join(repo, "clean.txt"), "nothing\n")
	git("add", "-A")
	// The working tree changes after staging: the index is what counts.
	writeFile(t, filepath.Join(repo, "dir with space", "my config.env"), "# settings\nAPI_KEY=from-the-vault\n")
	writeFile(t, filepath.Join(repo, "clean.txt"), "nothing\n"+unstaged+"\n")
	writeFile(t, filepath.Join(repo, "untracked.txt"), unstaged+"\n")

	out, errs, code = scan()
	assert.Equal(t, 1, code, errs)
	assert.Equal(t, report(f, "dir with space/my config.env", 2, staged)+report(f, "tab\tname.txt", 1, gone), out)
	assert.NotContains(t, out+errs, staged, "the whole key is never printed")

	git("commit", "-q", "-m", "first")
	out, errs, code = scan()
	assert.Equal(t, 0, code, "nothing staged after the commit: %s", errs)
	assert.Empty(t, out)

	git("rm", "-q", "--cached", "tab\tname.txt")
	git("add", "clean.txt")
	out, errs, code = scan()
	assert.Equal(t, 1, code, "a deleted file is no failure: %s", errs)
	assert.Equal(t, report(f, "clean.txt", 2, unstaged), out)

	_, errs, code = runScan(t, "--staged", ".")
	assert.Equal(t, 2, code, "--staged takes no paths: %s", errs)
}
