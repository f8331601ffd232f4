#ifndef SWITCHYARD_CNGHTTP2_SHIM_H
#define SWITCHYARD_CNGHTTP2_SHIM_H
// EventHTTP imports this module next to CLibevent, whose event-config.h defines _GNU_SOURCE:
// define it here too, before any system header (nghttp2.h pulls in <sys/types.h>), so both clang
// modules see the same glibc declarations (fd_set; see shared/NOTES-libevent-swift.md).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <nghttp2/nghttp2.h>

// nghttp2_frame is a C union: reading the header through a helper keeps Swift's view of it to the
// one member every frame has.
static inline uint8_t switchyard_h2_frame_type(const nghttp2_frame *frame) { return frame->hd.type; }
static inline uint8_t switchyard_h2_frame_flags(const nghttp2_frame *frame) { return frame->hd.flags; }
static inline int32_t switchyard_h2_frame_stream(const nghttp2_frame *frame) { return frame->hd.stream_id; }
static inline int switchyard_h2_headers_category(const nghttp2_frame *frame) { return (int)frame->headers.cat; }
static inline uint32_t switchyard_h2_rst_error(const nghttp2_frame *frame) { return frame->rst_stream.error_code; }

#endif
