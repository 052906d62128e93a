package main

import (
	"flag"
	"strings"

	"github.com/overlayd/overlayd/config"
)

// exposeList is the repeatable --expose flag.
type exposeList []config.Expose

func (l *exposeList) String() string {
	s := make([]string, len(*l))
	for i, e := range *l {
		s[i] = e.String()
	}
	return strings.Join(s, ",")
}

func (l *exposeList) Set(v string) error {
	e, err := config.ParseExpose(v)
	if err != nil {
		return err
	}
	*l = append(*l, e)
	return nil
}

// exposeFlags declares --expose on fs; the returned apply copies it into
// c when name is "expose".
func exposeFlags(fs *flag.FlagSet) (apply func(name string, c *config.Config) error) {
	var exposes exposeList
	fs.Var(&exposes, "expose", "make a local program a backend of an overlay service, e.g. web:80/tcp=127.0.0.1:3000 (`SERVICE[.NET]:PORT/tcp=IP:PORT`, repeatable, added to the file's exposes; gossip)")
	return func(name string, c *config.Config) error {
		if name == "expose" {
			c.Exposes = appendNew(c.Exposes, exposes, config.Expose.String)
		}
		return nil
	}
}
