package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cmdResult is how one command ended.
type cmdResult struct {
	args   []string
	exit   int  // exit code; -1 when ended by a signal
	killed bool // ended by the SIGKILL of the trial
	hung   bool // still running at the timeout (then killed)
	stdout string
	stderr string
	dur    time.Duration
}

func (r cmdResult) ok() bool { return r.exit == 0 && !r.hung }

// trace reports a Go panic or runtime crash in the output.
func (r cmdResult) trace() bool {
	s := r.stderr + r.stdout
	return strings.Contains(s, "panic:") || strings.Contains(s, "fatal error:") ||
		(strings.Contains(s, "goroutine ") && strings.Contains(s, "[running]"))
}

// clear reports a refusal a user can read: a non-zero exit with one
// short error on stderr, no trace.
func (r cmdResult) clear() bool {
	if r.exit == 0 || r.hung || r.trace() {
		return false
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	return len(lines) <= 2 && lines[0] != ""
}

func (r cmdResult) String() string {
	what := fmt.Sprintf("exit %d", r.exit)
	switch {
	case r.hung:
		what = "hung"
	case r.killed:
		what = "killed"
	}
	msg := strings.TrimSpace(r.stderr)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i] + " [...]"
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	out := fmt.Sprintf("%s (%s, %v)", strings.Join(r.args, " "), what, r.dur.Round(time.Millisecond))
	if msg != "" {
		out += ": " + msg
	}
	return out
}

// run runs bin with args under timeout, killing it with SIGKILL after
// killAfter when that is positive.
func run(timeout, killAfter time.Duration, bin string, args ...string) cmdResult {
	res := cmdResult{args: append([]string{filepath.Base(bin)}, args...)}
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		res.exit, res.stderr = 127, err.Error()
		return res
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var killC <-chan time.Time
	if killAfter > 0 {
		t := time.NewTimer(killAfter)
		defer t.Stop()
		killC = t.C
	}
	to := time.NewTimer(timeout)
	defer to.Stop()
	sent := false
	for {
		select {
		case <-done:
			res.dur = time.Since(start)
			res.stdout, res.stderr = out.String(), errb.String()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				res.exit = -1
				res.killed = sent && !res.hung && ws.Signal() == syscall.SIGKILL
			} else {
				res.exit = ws.ExitStatus()
			}
			return res
		case <-killC:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			sent = true
			killC = nil
		case <-to.C:
			res.hung = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
}

// copyDir copies the tree src to dst (which must not exist).
func copyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// replaceDir makes dst a copy of src.
func replaceDir(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return copyDir(src, dst)
}

// mountTmpfs mounts a tmpfs of the given size on dir.
func mountTmpfs(dir, size string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size)
}

func unmount(dir string) { _ = unix.Unmount(dir, unix.MNT_DETACH) }

// fill takes the free space of the file system of dir down to about
// leave bytes with one ballast file, and returns its path.
func fill(dir string, leave int64) (string, error) {
	path := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", err
	}
	off := int64(0)
	for n := int64(st.Bavail)*st.Bsize - leave; n >= 4096; n /= 2 {
		for {
			var now unix.Statfs_t
			if unix.Statfs(dir, &now) != nil || int64(now.Bavail)*now.Bsize-n < leave {
				break
			}
			if unix.Fallocate(int(f.Fd()), 0, off, n) != nil {
				break
			}
			off += n
		}
	}
	return path, nil
}

// freeBytes is the free space of the file system of dir.
func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}

// flipByte xors the byte at off of path with x (not 0).
func flipByte(path string, off int64, x byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= x
	_, err = f.WriteAt(b, off)
	return err
}
