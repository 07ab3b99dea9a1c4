"""One data-parallel rank under the gpu check's T4 emulation: `probe.emulate_t4()`, then 08's script
(utils.ddp_train). utils.ddp launches this module instead of the script when COURSE_EMULATE_T4=1."""
from tools.hub import probe
from utils import ddp_train

if __name__ == "__main__":
    probe.emulate_t4()
    ddp_train.main()
