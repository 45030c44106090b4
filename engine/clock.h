/* Wall-clock and monotonic time in milliseconds. */
#ifndef BGWF_CLOCK_H
#define BGWF_CLOCK_H

#include <stdint.h>

/* Returns milliseconds since the Unix epoch; stored times use this clock. */
int64_t clock_wall_ms(void);

/* Returns milliseconds of a clock that never jumps; intervals use this one. */
int64_t clock_mono_ms(void);

#endif
