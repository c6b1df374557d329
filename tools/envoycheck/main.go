// envoycheck loads an Envoy v3 bootstrap (JSON) with protojson and runs Envoy's own
// validation rules (protoc-gen-validate's ValidateAll) on it, including every typed_config.
//
// Usage: envoycheck FILE.json   (exit 0: valid; 1: invalid, the reasons on stderr; 2: usage)
//
// protojson refuses unknown fields and wrong types; ValidateAll applies the constraints
// Envoy's API declares (ports <= 65535, required fields, durations > 0, enums...). The
// extension packages are imported so that each @type in a typed_config resolves.
package main

import (
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	// The extensions the export names in typed_config: imported for their types to register.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: envoycheck FILE.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var cfg bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(raw, &cfg); err != nil { // unknown fields are errors by default
		fmt.Fprintf(os.Stderr, "not an Envoy v3 bootstrap: %v\n", err)
		os.Exit(1)
	}
	failed := false
	if err := cfg.ValidateAll(); err != nil {
		fmt.Fprintf(os.Stderr, "invalid: %v\n", err)
		failed = true
	}
	// ValidateAll does not look inside Any: unpack each typed_config and validate it too.
	var walk func(m proto.Message)
	walk = func(m proto.Message) {
		m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			return visit(fd, v, walk, &failed)
		})
	}
	walk(&cfg)
	if failed {
		os.Exit(1)
	}
	fmt.Println("ok")
}
