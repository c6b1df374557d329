package main

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// visit descends into message fields; an Any is unpacked (its type must be known) and validated.
func visit(fd protoreflect.FieldDescriptor, v protoreflect.Value, walk func(proto.Message), failed *bool) bool {
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return true
	}
	each := func(m protoreflect.Message) {
		msg := m.Interface()
		if a, ok := msg.(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				fmt.Fprintf(os.Stderr, "typed_config %s: %v\n", a.GetTypeUrl(), err)
				*failed = true
				return
			}
			if val, ok := inner.(validator); ok {
				if err := val.ValidateAll(); err != nil {
					fmt.Fprintf(os.Stderr, "invalid %s: %v\n", a.GetTypeUrl(), err)
					*failed = true
				}
			}
			walk(inner)
			return
		}
		walk(msg)
	}
	switch {
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			each(l.Get(i).Message())
		}
	case fd.IsMap():
		if fd.MapValue().Kind() == protoreflect.MessageKind {
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				each(mv.Message())
				return true
			})
		}
	default:
		each(v.Message())
	}
	return true
}
