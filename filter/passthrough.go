package filter

// PassThrough is a StreamFilter that lets everything through: every
// callback continues and OnLog and OnDestroy do nothing. A filter embeds
// it and defines only the callbacks it acts on; the rest are its. It has
// no state, so embedding it costs nothing.
type PassThrough struct{}

func (PassThrough) DecodeHeaders(*HeaderMap, bool) HeadersStatus { return HeadersContinue }
func (PassThrough) DecodeData(*Buffer, bool) DataStatus          { return DataContinue }
func (PassThrough) DecodeTrailers(*HeaderMap) TrailersStatus     { return TrailersContinue }
func (PassThrough) EncodeHeaders(*HeaderMap, bool) HeadersStatus { return HeadersContinue }
func (PassThrough) EncodeData(*Buffer, bool) DataStatus          { return DataContinue }
func (PassThrough) EncodeTrailers(*HeaderMap) TrailersStatus     { return TrailersContinue }
func (PassThrough) OnLog()                                       {}
func (PassThrough) OnDestroy()                                   {}

var _ StreamFilter = PassThrough{}
