"""``make vm-test``: the site playbook on a Debian 12 qemu VM over SSH, exactly as on a server.

* :mod:`tests.vm.image` builds (and caches) the VM's disk image, kernel and SSH key;
* :mod:`tests.vm.machine` boots a throwaway overlay of it (KVM where it works, else TCG), waits
  for SSH and destroys it;
* :mod:`tests.vm.vm_test` runs the whole test (``python -m tests.vm.vm_test``);
* ``tests/vm/test_node.py`` is the testinfra suite it runs over SSH (collected only then).
"""
