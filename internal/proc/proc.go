// Package proc builds and runs the project's binaries as real processes, for the end-to-end
// tests, the chaos suite, the demo and the benchmarks: start with an environment, capture the
// output to a file, wait for /readyz, stop with SIGTERM or kill with SIGKILL.
package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the paths of the built programs.
type Binaries struct {
	Consumer string
	Worker   string
}

// ModuleRoot returns the directory of the project's go.mod.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the consumer module")
	}
	return filepath.Dir(mod), nil
}

// Build compiles cmd/consumer and cmd/example-worker into dir.
func Build(ctx context.Context, dir string) (Binaries, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Consumer: filepath.Join(dir, "consumer"), Worker: filepath.Join(dir, "example-worker")}
	for out, pkg := range map[string]string{b.Consumer: "./cmd/consumer", b.Worker: "./cmd/example-worker"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	}
	return b, nil
}

// Process is a started program.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	mu      sync.Mutex
	exit    int
	waitErr error
}

// Start runs path with args and env (added to the current environment), writing its stdout and
// stderr to logPath.
func Start(name, path string, args, env []string, logPath string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a terminal's Ctrl-C reaches only the parent, which decides.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, logFile: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exit = cmd.ProcessState.ExitCode()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			p.waitErr = err
		}
		p.mu.Unlock()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the exit code (-1 when killed by a signal); valid after Done.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and waits up to timeout for the exit (then kills). It returns the
// exit code and how long the process took to stop.
func (p *Process) Terminate(timeout time.Duration) (int, time.Duration, error) {
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.ExitCode(), time.Since(start), nil
	case <-time.After(timeout):
		p.Kill()
		return p.ExitCode(), time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM", p.Name, timeout)
	}
}

// Stop terminates the process if it is still running (for cleanups).
func (p *Process) Stop() {
	select {
	case <-p.done:
	default:
		_, _, _ = p.Terminate(30 * time.Second)
	}
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// FreeAddr returns a loopback host:port that is free right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitReady polls http://addr/readyz until it answers 200, the process exits, or ctx ends.
func WaitReady(ctx context.Context, p *Process, addr string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", p.Name, addr, ctx.Err())
		case <-p.done:
			return fmt.Errorf("%s exited with code %d before it was ready; log:\n%s", p.Name, p.ExitCode(), p.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
