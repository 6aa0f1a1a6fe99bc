package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/herd-cluster/herd/pkg/membership"
)

// The handoff between a gateway process and the one replacing it on an
// upgrade, over a socket the old one (the leader) passes to the new one (the
// follower): JSON lines. The leader sends its view, then every event it
// applies, each acknowledged by the follower once applied, so that no
// process of this gateway routes to a backend the leader acknowledged the
// withdrawal of; last, once it has left gossip, it says so, and the
// follower takes the gossip identity.

// handoffMsg is one line of the handoff.
type handoffMsg struct {
	View   *View                    `json:"view,omitempty"`
	Seq    uint64                   `json:"seq,omitempty"`
	Type   string                   `json:"type,omitempty"` // an event's type
	Nodes  []membership.EncodedNode `json:"nodes,omitempty"`
	Gossip bool                     `json:"gossip,omitempty"` // the leader has left gossip
	Ack    uint64                   `json:"ack,omitempty"`    // follower → leader
}

// maxHandoffLine bounds one line: a view of thousands of members.
const maxHandoffLine = 64 << 20

// ErrHandoff: the other side of the handoff is gone or broke the protocol.
var ErrHandoff = errors.New("gateway handoff failed")

// Leader is the old process's side of a handoff: a Follower of its Gateway
// that forwards each event to the new process and waits for it to be
// applied there.
type Leader struct {
	g       *Gateway
	conn    net.Conn
	timeout time.Duration

	mu      sync.Mutex // serialises writes
	enc     *json.Encoder
	seq     uint64
	viewOut chan error // the view's write, once done
	acks    chan uint64
	readErr chan error
}

// Lead starts a handoff on conn: it makes the new process a follower of g
// and sends it g's view. It returns at once; events wait for the view to be
// sent.
func Lead(ctx context.Context, g *Gateway, conn net.Conn) (*Leader, error) {
	l := &Leader{
		g: g, conn: conn, timeout: g.cfg.FollowTimeout, enc: json.NewEncoder(conn),
		viewOut: make(chan error, 1), acks: make(chan uint64, 16), readErr: make(chan error, 1),
	}
	v, err := g.Follow(ctx, l)
	if err != nil {
		return nil, err
	}
	go func() {
		l.mu.Lock()
		err := l.enc.Encode(handoffMsg{View: &v})
		l.mu.Unlock()
		l.viewOut <- err
		close(l.viewOut)
	}()
	go l.readAcks()
	return l, nil
}

func (l *Leader) readAcks() {
	dec := json.NewDecoder(bufio.NewReader(l.conn))
	for {
		var m handoffMsg
		if err := dec.Decode(&m); err != nil {
			l.readErr <- err
			return
		}
		l.acks <- m.Ack
	}
}

// Apply forwards e to the follower and waits until it has applied it.
func (l *Leader) Apply(e membership.Event) error {
	wait := time.NewTimer(l.timeout)
	defer wait.Stop()
	select { // the view goes first
	case err, ok := <-l.viewOut:
		if ok && err != nil {
			return fmt.Errorf("%w: sending the view: %w", ErrHandoff, err)
		}
	case <-wait.C:
		return fmt.Errorf("%w: the view was not taken within %s", ErrHandoff, l.timeout)
	}
	msg := handoffMsg{Type: e.Type.String()}
	for _, n := range e.Nodes {
		if enc, err := n.Encode(); err == nil {
			msg.Nodes = append(msg.Nodes, enc)
		} else { // malformed tags: the follower learns the member is not routed
			msg.Nodes = append(msg.Nodes, membership.EncodedNode{Name: n.Name, Addr: n.Addr.String(), Status: n.Status})
		}
	}
	l.mu.Lock()
	l.seq++
	msg.Seq = l.seq
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.timeout))
	err := l.enc.Encode(msg)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandoff, err)
	}
	for {
		select {
		case ack := <-l.acks:
			if ack >= msg.Seq {
				return nil
			}
		case err := <-l.readErr:
			l.readErr <- err
			return fmt.Errorf("%w: %w", ErrHandoff, err)
		case <-wait.C:
			return fmt.Errorf("%w: event not applied within %s", ErrHandoff, l.timeout)
		}
	}
}

// HandOver tells the follower that this process has left gossip (its
// membership is shut down, so it has no event left to forward): the gossip
// identity is the follower's. It closes the handoff.
func (l *Leader) HandOver() error {
	l.mu.Lock()
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.timeout))
	err := l.enc.Encode(handoffMsg{Gossip: true})
	l.mu.Unlock()
	l.conn.Close()
	return err
}

// Close ends a handoff that failed: the follower is detached.
func (l *Leader) Close(ctx context.Context) {
	_ = l.detach(ctx)
	l.conn.Close()
}

func (l *Leader) detach(ctx context.Context) error {
	_, err := l.g.Follow(ctx, nil)
	return err
}

// Successor is the new process's side of a handoff.
type Successor struct {
	g   *Gateway
	dec *json.Decoder
	enc *json.Encoder
	// Taken is closed when the gossip identity is this process's: the
	// leader said so, or is gone.
	Taken chan struct{}
	err   error
}

// ReadView starts the new process's side of a handoff on conn: it reads the
// leader's view, which the caller restores before Run. Then Run follows the
// leader's events.
func ReadView(conn io.ReadWriter) (View, *Successor, error) {
	dec := json.NewDecoder(bufio.NewReader(io.LimitReader(conn, 1<<40)))
	var m handoffMsg
	if err := dec.Decode(&m); err != nil {
		return View{}, nil, fmt.Errorf("%w: reading the view: %w", ErrHandoff, err)
	}
	if m.View == nil {
		return View{}, nil, fmt.Errorf("%w: the first message is not a view", ErrHandoff)
	}
	return *m.View, &Successor{dec: dec, enc: json.NewEncoder(conn), Taken: make(chan struct{})}, nil
}

// Run applies the leader's events to g (which must be running) and
// acknowledges each, until the leader hands gossip over or goes away; then
// Taken is closed. Err says which.
func (f *Successor) Run(ctx context.Context, g *Gateway) {
	defer close(f.Taken)
	for {
		var m handoffMsg
		if err := f.dec.Decode(&m); err != nil {
			f.err = err
			return
		}
		if m.Gossip {
			return
		}
		e, err := decodeEvent(m)
		if err != nil {
			f.err = err
			return
		}
		if err := g.Apply(ctx, e); err != nil {
			f.err = err
			return
		}
		if err := f.enc.Encode(handoffMsg{Ack: m.Seq}); err != nil {
			f.err = err
			return
		}
	}
}

// Err is why the handoff ended, after Taken: nil when the leader handed
// gossip over.
func (f *Successor) Err() error { return f.err }

func decodeEvent(m handoffMsg) (membership.Event, error) {
	e := membership.Event{At: time.Now()}
	switch m.Type {
	case membership.EventJoin.String():
		e.Type = membership.EventJoin
	case membership.EventUpdate.String():
		e.Type = membership.EventUpdate
	case membership.EventLeave.String():
		e.Type = membership.EventLeave
	case membership.EventFailed.String():
		e.Type = membership.EventFailed
	case membership.EventReap.String():
		e.Type = membership.EventReap
	default:
		return e, fmt.Errorf("%w: unknown event type %q", ErrHandoff, m.Type)
	}
	for _, n := range m.Nodes {
		e.Nodes = append(e.Nodes, membership.DecodeNode(n))
	}
	return e, nil
}
