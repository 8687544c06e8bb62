package accesslog

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
)

// bufferLines bounds how many lines wait for one file's writer goroutine;
// beyond it lines are dropped and counted, so the data path never blocks
// on a slow disk (as Envoy's buffered file writer).
const bufferLines = 4096

// Writer appends lines to one file from its own goroutine. Write never
// blocks. Reopen makes the goroutine close and reopen the path (log
// rotation after rename). Safe for concurrent use.
type Writer struct {
	path   string
	lines  chan string
	reopen chan struct{}
	flush  chan chan struct{}
	quit   chan struct{}
	done   chan struct{}
	closed sync.Once

	// Counters in the spirit of Envoy's filesystem.write_buffered,
	// write_completed, write_failed and a drop count.
	Buffered, Completed, Failed, Dropped, Reopens atomic.Uint64
	// shared are the counters of every file of a Files (nil: none).
	shared *Counters
}

// Adder is a counter (a *stats.Counter).
type Adder interface{ Add(uint64) }

// Counters are counted over every file of a Files, as Envoy's
// filesystem.* stats; nil fields count nothing.
type Counters struct {
	WriteBuffered, WriteCompleted, WriteFailed, WriteDropped, ReopenFailed Adder
}

func inc(c *Counters, pick func(*Counters) Adder) {
	if c == nil {
		return
	}
	if a := pick(c); a != nil {
		a.Add(1)
	}
}

// OpenWriter opens path for appending (creating it 0644) and starts its
// writer goroutine. /dev/stdout and /dev/stderr write to the process's
// own streams. The error names the path.
func OpenWriter(path string) (*Writer, error) { return openWriter(path, nil) }

func openWriter(path string, shared *Counters) (*Writer, error) {
	w := &Writer{path: path, shared: shared, lines: make(chan string, bufferLines),
		reopen: make(chan struct{}, 1), flush: make(chan chan struct{}), quit: make(chan struct{}), done: make(chan struct{})}
	out, err := w.open()
	if err != nil {
		return nil, err
	}
	go w.run(out)
	return w, nil
}

func (w *Writer) open() (io.WriteCloser, error) {
	switch w.path {
	case "/dev/stdout":
		return nopCloser{os.Stdout}, nil
	case "/dev/stderr":
		return nopCloser{os.Stderr}, nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log %q: %w", w.path, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Write queues one line; when the buffer is full the line is dropped and
// counted.
func (w *Writer) Write(line string) {
	select {
	case w.lines <- line:
		w.Buffered.Add(1)
		inc(w.shared, func(c *Counters) Adder { return c.WriteBuffered })
	default:
		w.Dropped.Add(1)
		inc(w.shared, func(c *Counters) Adder { return c.WriteDropped })
	}
}

// Reopen asks the writer to reopen its path before the next write.
func (w *Writer) Reopen() {
	select {
	case w.reopen <- struct{}{}:
	default: // one is already pending
	}
}

// Flush waits until every line queued before the call has been written
// (or failed), and returns at once after Close. For tests and shutdown;
// the data path never calls it.
func (w *Writer) Flush() {
	done := make(chan struct{})
	select {
	case w.flush <- done:
		<-done
	case <-w.done:
	}
}

// Close flushes queued lines and closes the file. A line written after
// Close is dropped (a stream that outlived the drain), never a panic.
func (w *Writer) Close() {
	w.closed.Do(func() { close(w.quit) })
	<-w.done
}

// drain writes the lines queued now, without waiting for more.
func (w *Writer) drain(out io.WriteCloser) io.WriteCloser {
	for {
		select {
		case line := <-w.lines:
			out = w.write(out, line)
		default:
			return out
		}
	}
}

func (w *Writer) run(out io.WriteCloser) {
	defer close(w.done)
	for {
		select {
		case <-w.reopen:
			out = w.doReopen(out)
		case done := <-w.flush:
			// Lines queued before Flush are in the channel: write them.
			out = w.drain(out)
			close(done)
		case <-w.quit:
			w.drain(out).Close()
			return
		case line := <-w.lines:
			out = w.write(out, line)
		}
	}
}

// write writes one line, after a pending reopen, so lines logged after
// the rotation signal land in the new file.
func (w *Writer) write(out io.WriteCloser, line string) io.WriteCloser {
	select {
	case <-w.reopen:
		out = w.doReopen(out)
	default:
	}
	if _, err := io.WriteString(out, line); err != nil {
		w.Failed.Add(1)
		inc(w.shared, func(c *Counters) Adder { return c.WriteFailed })
	} else {
		w.Completed.Add(1)
		inc(w.shared, func(c *Counters) Adder { return c.WriteCompleted })
	}
	return out
}

func (w *Writer) doReopen(out io.WriteCloser) io.WriteCloser {
	n, err := w.open()
	if err != nil {
		w.Failed.Add(1)
		inc(w.shared, func(c *Counters) Adder { return c.ReopenFailed })
		return out // keep writing to the old file rather than losing lines
	}
	out.Close()
	w.Reopens.Add(1)
	return n
}

// Files shares one Writer per path, as Envoy opens each path once.
type Files struct {
	// Counters, when set before the first Get, count for every file.
	Counters *Counters

	mu sync.Mutex
	m  map[string]*Writer
}

// Get returns the path's writer, opening it on first use.
func (fs *Files) Get(path string) (*Writer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if w, ok := fs.m[path]; ok {
		return w, nil
	}
	w, err := openWriter(path, fs.Counters)
	if err != nil {
		return nil, err
	}
	if fs.m == nil {
		fs.m = map[string]*Writer{}
	}
	fs.m[path] = w
	return w, nil
}

// ReopenAll reopens every file (SIGUSR1, admin POST /reopen_logs).
func (fs *Files) ReopenAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, w := range fs.m {
		w.Reopen()
	}
}

// Flush waits until every line queued so far, on every file, is written.
func (fs *Files) Flush() {
	for _, w := range fs.writers() {
		w.Flush()
	}
}

// Close flushes and closes every file. The owner calls it once no logger
// writes any more (the process is stopping).
func (fs *Files) Close() {
	ws := fs.writers()
	fs.mu.Lock()
	fs.m = nil
	fs.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
}

func (fs *Files) writers() []*Writer {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]*Writer, 0, len(fs.m))
	for _, w := range fs.m {
		out = append(out, w)
	}
	return out
}

// Paths lists the open files' paths, sorted.
func (fs *Files) Paths() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]string, 0, len(fs.m))
	for p := range fs.m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
