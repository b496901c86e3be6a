"""Models: InversionNet and its parameter-efficient fine-tuning with LoRA.

- :mod:`~fwi_teach.models.inversionnet`  OpenFWI's InversionNet, its layer table, OpenFWI checkpoints
- :mod:`~fwi_teach.models.lora`          LoRA from scratch: adapter layers, :func:`apply_lora`, merging
- :mod:`~fwi_teach.models.lean`          the lean LoRA computation (merged-weight convolutions)
- :mod:`~fwi_teach.models.peft_bridge`   the same with Hugging Face peft (peft is imported on first use)
- :mod:`~fwi_teach.models.adapters`      one PFM, many saved adapters: save, check, load, switch
"""

from .inversionnet import (INVERSIONNET_BLOCKS, ConvBlock, ConvBlockTanh, DeconvBlock, InversionNet, count_parameters,
                           encoder_output_size, layer_table, load_openfwi_checkpoint)
from .lora import (FrozenStatsBatchNorm2d, LoRAConv2d, LoRAConvTranspose2d, LoraSettings, apply_lora, lora_state_dict,
                   merge_lora, set_lora_train_mode, trainable_parameter_report)
from .peft_bridge import (apply_peft_lora, load_peft_adapter, peft_conv2d_class, peft_conv_transpose_class,
                          peft_lora_config, set_lean)
from .adapters import (adapter_footprint, adapter_metadata, check_adapter, directory_bytes, load_adapters,
                       pfm_fingerprint, read_adapter_metadata, save_adapter, use_adapter)

__all__ = [
    "ConvBlock", "DeconvBlock", "ConvBlockTanh", "InversionNet", "INVERSIONNET_BLOCKS", "count_parameters",
    "load_openfwi_checkpoint", "encoder_output_size", "layer_table",
    "LoRAConv2d", "LoRAConvTranspose2d", "FrozenStatsBatchNorm2d", "LoraSettings", "apply_lora",
    "set_lora_train_mode", "merge_lora", "lora_state_dict", "trainable_parameter_report",
    "peft_lora_config", "apply_peft_lora", "load_peft_adapter", "peft_conv_transpose_class", "peft_conv2d_class",
    "set_lean",
    "save_adapter", "load_adapters", "use_adapter", "check_adapter", "adapter_metadata", "read_adapter_metadata",
    "pfm_fingerprint", "adapter_footprint", "directory_bytes",
]
