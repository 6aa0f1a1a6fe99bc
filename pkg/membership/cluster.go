// Package membership is Herd's view of the gossip cluster. It is the only
// package that imports Serf: it turns members and their tags into validated,
// typed Nodes and Events, and offers join, leave, tag updates and queries.
package membership

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Cluster is this process's membership in a Herd gossip cluster.
type Cluster struct {
	serf   *serf.Serf
	logger hclog.Logger
	cfg    Config

	serfEvents chan serf.Event
	loopDone   chan struct{}
	// events holds what EventCh's consumer has not taken yet; nil without
	// EventCh.
	events         *eventQueue
	deliverDone    chan struct{}
	queriesDropped atomic.Uint64

	mu   sync.Mutex // guards tags
	tags Tags

	shutdownOnce sync.Once
	shutdownErr  error

	keyring   *memberlist.Keyring
	saverDone chan struct{}
}

// New starts a gossip member that is alone until Join. It binds the gossip
// port at once, so a port in use or a bad key fails here.
func New(cfg *Config) (*Cluster, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.Default()
	}
	logger = logger.Named("membership")
	tagMap, err := cfg.Tags.Encode()
	if err != nil {
		return nil, fmt.Errorf("local tags: %w", err)
	}
	mc, err := cfg.memberlistConfig()
	if err != nil {
		return nil, err
	}
	std := logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true})
	mc.Logger = std
	if cfg.EncryptKey != nil {
		keyring, err := loadKeyring(cfg.KeyringPath, cfg.EncryptKey)
		if err != nil {
			return nil, err
		}
		mc.Keyring, mc.SecretKey = keyring, nil
	}

	c := &Cluster{
		logger:     logger,
		cfg:        *cfg,
		serfEvents: make(chan serf.Event, 256),
		loopDone:   make(chan struct{}),
		tags:       cfg.Tags,
	}
	if cfg.EventCh != nil {
		c.events = newEventQueue()
		c.deliverDone = make(chan struct{})
	}
	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.MemberlistConfig = mc
	sc.Tags = tagMap
	sc.EventCh = c.serfEvents
	sc.Logger = std
	sc.ValidateNodeNames = true
	if cfg.Profile == ProfileLocal {
		// Members that failed (a partition, say) are retried every 30 s by
		// default; on one machine, every 3 s.
		sc.ReconnectInterval = 3 * time.Second
	}
	// Serf would write the keyring file itself, but not atomically; the
	// keyring saver below does (temp file, fsync, rename).
	if cfg.SnapshotPath != "" {
		sc.SnapshotPath = cfg.SnapshotPath
		sc.RejoinAfterLeave = true // a restart after a graceful stop rejoins too
	}
	s, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	c.serf = s
	go c.loop()
	if c.events != nil {
		go func() {
			defer close(c.deliverDone)
			c.events.deliver(cfg.EventCh, s.ShutdownCh())
		}()
	}
	if cfg.EncryptKey != nil && cfg.KeyringPath != "" {
		c.keyring = mc.Keyring
		c.saverDone = make(chan struct{})
		go c.saveKeyring()
	}
	return c, nil
}

// Join contacts the given "ip:port" addresses and joins their cluster. It
// succeeds if at least one answered.
func (c *Cluster) Join(addrs []string) (int, error) {
	n, err := c.serf.Join(addrs, true)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = errors.New("no address answered")
	}
	msg := strings.Join(strings.Fields(err.Error()), " ") // Serf's multi-line list, on one line
	switch {
	case strings.Contains(msg, "could decrypt"), strings.Contains(msg, "not encrypted"), strings.Contains(msg, "encryption"):
		return 0, fmt.Errorf("join %v: %s: %w", addrs, msg, ErrWrongKey)
	}
	return 0, fmt.Errorf("join %v: %s", addrs, msg)
}

// ErrWrongKey: the cluster refused this member's gossip encryption (a
// different key, or one side has none). Join's error wraps it last, so a
// command line can append which of its settings holds the key.
var ErrWrongKey = errors.New("the gossip key differs from the cluster's")

// LocalNode returns this member as others see it.
func (c *Cluster) LocalNode() Node {
	return nodeFromMember(c.serf.LocalMember())
}

// AdvertiseAddr is the address this member gossips from.
func (c *Cluster) AdvertiseAddr() netip.Addr {
	return c.LocalNode().Addr.Addr()
}

// Members returns every known member, including failed and left ones that
// are not yet reaped, and those with malformed tags (Err set).
func (c *Cluster) Members() []Node {
	ms := c.serf.Members()
	out := make([]Node, len(ms))
	for i, m := range ms {
		out[i] = nodeFromMember(m)
	}
	return out
}

// Member returns the member called name, if the cluster knows it (alive,
// failed, or left and not yet reaped).
func (c *Cluster) Member(name string) (Node, bool) {
	for _, m := range c.serf.Members() {
		if m.Name == name {
			return nodeFromMember(m), true
		}
	}
	return Node{}, false
}

// Tags returns the tags this member announces.
func (c *Cluster) Tags() Tags {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tags
}

// SetTags validates and announces new tags. They reach every member within a
// few gossip rounds and show there as a member-update event.
func (c *Cluster) SetTags(t Tags) error {
	m, err := t.Encode()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.serf.SetTags(m)
	// Encode bounds the size, so Serf's only remaining error is a timeout
	// waiting for the broadcast to go out: the tags are in effect locally
	// and keep spreading by gossip.
	c.tags = t
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTagsUnconfirmed, err)
	}
	return nil
}

// ErrTagsUnconfirmed is returned by SetTags when the new tags are in effect
// but their broadcast was not confirmed in time. They still spread; callers
// that must know (draining) confirm with SyncGateways.
var ErrTagsUnconfirmed = errors.New("tags set; broadcast not confirmed yet")

// Leave announces that this member leaves on purpose, so others remove it at
// once instead of after failure detection. Call Shutdown afterwards.
func (c *Cluster) Leave() error {
	if err := c.serf.Leave(); err != nil {
		return fmt.Errorf("leave cluster: %w", err)
	}
	return nil
}

// ErrNoSuchMember is returned by ForceLeave for a name the cluster does not know.
var ErrNoSuchMember = errors.New("no such member")

// ErrMemberAlive is returned by ForceLeave for a member that is alive: it
// would refute the leave at once. Stop it instead; it leaves by itself.
var ErrMemberAlive = errors.New("cannot force-leave a live member")

// ForceLeave removes a failed member for good (Serf's force-leave with
// prune): every member forgets it now instead of after the reconnect timeout,
// and stops trying to reach it. A member that comes back later joins again as
// new. Members that are alive or leaving are refused; left ones are pruned.
func (c *Cluster) ForceLeave(name string) error {
	n, ok := c.Member(name)
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrNoSuchMember, name)
	case n.Status == StatusAlive || n.Status == StatusLeaving:
		return fmt.Errorf("%w: %s is %s; stop its agent instead (it leaves the cluster by itself)", ErrMemberAlive, name, n.Status)
	}
	if err := c.serf.RemoveFailedNodePrune(name); err != nil {
		return fmt.Errorf("force-leave %s: %w", name, err)
	}
	return nil
}

// Shutdown stops gossip without a leave message (others will see a failure
// unless Leave was called first). Safe to call more than once.
func (c *Cluster) Shutdown() error {
	c.shutdownOnce.Do(func() {
		c.shutdownErr = c.serf.Shutdown()
		<-c.loopDone
		if c.deliverDone != nil {
			<-c.deliverDone
		}
		if c.saverDone != nil {
			<-c.saverDone
		}
	})
	return c.shutdownErr
}

// Stats counts what a member did instead of blocking gossip on a consumer
// that falls behind.
type Stats struct {
	// EventsCoalesced counts member events replaced by a newer event of the
	// same member before EventCh's consumer took them.
	EventsCoalesced uint64
	// QueriesDropped counts queries not delivered because QueryCh was full.
	QueriesDropped uint64
}

// Stats returns the member's counters since New.
func (c *Cluster) Stats() Stats {
	st := Stats{QueriesDropped: c.queriesDropped.Load()}
	if c.events != nil {
		st.EventsCoalesced = c.events.coalesced.Load()
	}
	return st
}

// loop translates Serf events into Herd's typed values. It never waits for
// the consumers (see Config.EventCh and QueryCh): Serf's own handlers send to
// serfEvents while holding its member lock, so a stalled loop would stall
// gossip itself.
func (c *Cluster) loop() {
	defer close(c.loopDone)
	shutdown := c.serf.ShutdownCh()
	for {
		select {
		case e := <-c.serfEvents:
			c.dispatch(e)
		case <-shutdown:
			return
		}
	}
}

func (c *Cluster) dispatch(e serf.Event) {
	switch e := e.(type) {
	case serf.MemberEvent:
		typ, ok := eventTypeOf(e.Type)
		if !ok {
			return
		}
		ev := Event{Type: typ, Nodes: make([]Node, len(e.Members)), At: time.Now()}
		for i, m := range e.Members {
			n := nodeFromMember(m)
			if n.Err != nil && !errors.Is(n.Err, ErrNotHerd) && typ != EventLeave && typ != EventReap {
				c.logger.Warn("ignoring member with malformed tags", "node", n.Name, "addr", n.Addr, "error", n.Err)
			}
			ev.Nodes[i] = n
		}
		if c.events != nil {
			c.events.put(ev)
		}
	case *serf.Query:
		if c.cfg.QueryCh == nil {
			return
		}
		select {
		case c.cfg.QueryCh <- &Query{q: e}:
		default:
			// Like a lost datagram: the asker sees no answer from this
			// member before its deadline (Deploy asks again).
			n := c.queriesDropped.Add(1)
			c.logger.Warn("dropping query: the query channel is full", "query", e.Name, "from", e.SourceNode(),
				"dropped_total", n)
		}
	}
}
