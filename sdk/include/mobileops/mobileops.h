/* Umbrella header of the mobileops plugin SDK. */
#ifndef MOBILEOPS_MOBILEOPS_H
#define MOBILEOPS_MOBILEOPS_H

#include <mobileops/abi.h>
#include <mobileops/host.h>
#include <mobileops/plugin.h>
#include <mobileops/services.h>

#endif /* MOBILEOPS_MOBILEOPS_H */
