// SVG to PNG through librsvg and cairo, loaded at run time (dlopen): ntk needs neither to
// build or run, and writes PNG copies of its plots wherever librsvg is installed (Debian:
// librsvg2-2, present on most desktops and installed by scripts/setup.sh). The
// prototypes below are the libraries' stable C ABI (librsvg >= 2.46, cairo >= 1.0),
// declared here with opaque pointers. No stable API: only the Plots module may use it.
#ifndef NTK_CSVGRASTER_H
#define NTK_CSVGRASTER_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { double x, y, width, height; } ntk_rsvg_rectangle;  // RsvgRectangle
typedef struct { unsigned char *bytes; size_t count, capacity; } ntk_png_buffer;

static int ntk_png_append(void *closure, const unsigned char *data, unsigned int length) {
    ntk_png_buffer *buffer = (ntk_png_buffer *)closure;
    if (buffer->count + length > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 65536;
        while (capacity < buffer->count + length) capacity *= 2;
        unsigned char *grown = (unsigned char *)realloc(buffer->bytes, capacity);
        if (!grown) return 11;  // CAIRO_STATUS_WRITE_ERROR
        buffer->bytes = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->bytes + buffer->count, data, length);
    buffer->count += length;
    return 0;  // CAIRO_STATUS_SUCCESS
}

/// Renders the SVG document (`length` bytes) into a width x height PNG. On success returns
/// 0 and sets *png (malloc'd; free it with free()) and *png_length. Otherwise: 1 librsvg
/// or cairo is not installed, 2 the SVG does not parse, 3 rendering failed, 4 encoding
/// the PNG failed.
static inline int ntk_svg_to_png(const char *svg, size_t length, int width, int height,
                                 unsigned char **png, size_t *png_length) {
    static void *rsvg = NULL, *cairo = NULL;
    if (!rsvg) rsvg = dlopen("librsvg-2.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!cairo) cairo = dlopen("libcairo.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!rsvg || !cairo) return 1;
    void *(*new_from_data)(const unsigned char *, size_t, void **) =
        (void *(*)(const unsigned char *, size_t, void **))dlsym(rsvg, "rsvg_handle_new_from_data");
    int (*render_document)(void *, void *, const ntk_rsvg_rectangle *, void **) =
        (int (*)(void *, void *, const ntk_rsvg_rectangle *, void **))dlsym(rsvg, "rsvg_handle_render_document");
    void (*object_unref)(void *) = (void (*)(void *))dlsym(rsvg, "g_object_unref");
    void (*error_free)(void *) = (void (*)(void *))dlsym(rsvg, "g_error_free");
    void *(*surface_create)(int, int, int) = (void *(*)(int, int, int))dlsym(cairo, "cairo_image_surface_create");
    void *(*context_create)(void *) = (void *(*)(void *))dlsym(cairo, "cairo_create");
    void (*context_destroy)(void *) = (void (*)(void *))dlsym(cairo, "cairo_destroy");
    void (*surface_destroy)(void *) = (void (*)(void *))dlsym(cairo, "cairo_surface_destroy");
    int (*write_png)(void *, int (*)(void *, const unsigned char *, unsigned int), void *) =
        (int (*)(void *, int (*)(void *, const unsigned char *, unsigned int), void *))dlsym(cairo, "cairo_surface_write_to_png_stream");
    if (!new_from_data || !render_document || !object_unref || !error_free || !surface_create || !context_create ||
        !context_destroy || !surface_destroy || !write_png) return 1;

    void *error = NULL;
    void *handle = new_from_data((const unsigned char *)svg, length, &error);
    if (!handle) { if (error) error_free(error); return 2; }
    void *surface = surface_create(0 /* CAIRO_FORMAT_ARGB32 */, width, height);
    void *context = context_create(surface);
    ntk_rsvg_rectangle viewport = {0, 0, (double)width, (double)height};
    int rendered = render_document(handle, context, &viewport, &error);
    if (!rendered && error) error_free(error);
    context_destroy(context);
    object_unref(handle);
    int status = 3;
    if (rendered) {
        ntk_png_buffer buffer = {NULL, 0, 0};
        if (write_png(surface, ntk_png_append, &buffer) == 0) {
            *png = buffer.bytes;
            *png_length = buffer.count;
            status = 0;
        } else {
            free(buffer.bytes);
            status = 4;
        }
    }
    surface_destroy(surface);
    return status;
}

#endif
