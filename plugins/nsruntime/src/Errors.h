// Error helpers and the shared plugin code (plugins/common) under this engine's namespace.
#pragma once

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Loop.h>

namespace mobileops::nsruntime {

using Error = mobileops::sdk::Error;
using common::check;
using common::quote;
using common::sysError;
using common::wrap;

using common::checkImage;
using common::createImage;
using common::findProgram;
using common::Host;
using common::ImageRequest;
using common::LoopDevice;
using common::loopDevicesOf;
using common::parseSize;

} // namespace mobileops::nsruntime
