#include "err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const err_msgs[] = {
#define FLR_ERR_MSG(name, value, msg) [value] = msg,
    FLR_ERRORS(FLR_ERR_MSG)
#undef FLR_ERR_MSG
};

static const char *const err_names[] = {
#define FLR_ERR_NAME(name, value, msg) [value] = #name,
    FLR_ERRORS(FLR_ERR_NAME)
#undef FLR_ERR_NAME
};

const char *flr_strerror(int err)
{
    if (err < 0 || err >= (int)(sizeof(err_msgs) / sizeof(err_msgs[0])) || !err_msgs[err])
        return "unknown error";
    return err_msgs[err];
}

const char *flr_errname(int err)
{
    if (err < 0 || err >= (int)(sizeof(err_names) / sizeof(err_names[0])) || !err_names[err])
        return "UNKNOWN";
    return err_names[err];
}

void flr_why(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (!why || whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}
