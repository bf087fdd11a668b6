"""The services page in a real headless Chromium: alert rules added and removed, what was sent,
the autoscaler's machines and decisions, with real services, workers and a loopback receiver."""

from __future__ import annotations

import sys

from receiver import Receiver
from test_web_e2e import browser, login, page, shot, stack  # noqa: F401 - the e2e fixtures
from workerproc import FAST, ServiceProcess, wait_service

from trainyard import Queue, Task
from trainyard.controller.autoscale.local import ProcessDriver
from trainyard.queues import alertstore, scalestore
from trainyard.queues.scalestore import ScalerConfig


def test_services_page_manages_rules_and_shows_alerts_and_the_autoscaler(page, stack, conn, tmp_path):  # noqa: F811
    Queue.create("cpu")
    scalestore.configure(
        conn,
        ScalerConfig.model_validate(
            {
                "resources": {
                    "local": {
                        "driver": "process",
                        "worker_command": [sys.executable, "-m", "trainyard"],
                        "worker_args": ["--cpu-only"],
                        "env": FAST,
                    }
                },
                "queues": {"cpu": [{"resource": "local", "max": 1}]},
                "idle_timeout_s": 3600,
            }
        ),
    )
    login(page, stack, conn)
    with Receiver() as receiver, ServiceProcess("alerts.service"), ServiceProcess("autoscale.service"):
        wait_service(conn, "alerts")
        wait_service(conn, "autoscaler")
        page.goto(stack.url + "/#/services")
        page.wait_for_selector("#services-table tr:has-text('autoscaler'):has-text('acting')")

        page.click("#add-rule")  # a bad URL first: one clear message, nothing stored
        page.fill(".modal input[name=notify]", "nosuch://x/y")
        page.click(".modal button[type=submit]")
        page.wait_for_selector(".toast.error:has-text(\"scheme 'nosuch' is not one Apprise can send to\")")
        assert alertstore.rules(conn) == []

        page.click("#add-rule")
        page.select_option(".modal select[name=on]", "failed")
        page.fill(".modal input[name=notify]", receiver.url)
        page.fill(".modal input[name=queue]", "cpu")
        page.fill(".modal input[name=name]", "cpu failures")
        page.click(".modal button[type=submit]")
        page.wait_for_selector("#rules-table tr:has-text('cpu failures'):has-text('queue=cpu')")
        [rule] = alertstore.rules(conn)

        failing = Task.create("breaks", command=["python", "-c", "raise SystemExit(2)"]).enqueue("cpu")
        receiver.wait_for(lambda m: any(failing.id in x["message"] for x in m), timeout=120)
        page.wait_for_selector("#alerts-table tr[data-ok=true]:has-text(\"task 'breaks' failed\")")
        page.wait_for_selector("#scale-decisions tr[data-action='spin up']:has-text('1 task(s) waiting')")
        page.wait_for_selector("#scale-instances tr:has-text('running')")
        page.wait_for_selector("#scale-queues tr[data-queue=cpu]:has-text('1 / 1')")
        shot(page, stack, "services", full=True)

        page.click(f"#rules-table tr[data-rule='{rule.id}'] button[data-action=remove]")
        page.wait_for_selector("#rules-table.empty, p#rules-table")
        assert alertstore.rules(conn) == []
    driver = ProcessDriver(tmp_path, "")
    for inst in scalestore.instances(conn):
        driver.spin_down(inst.cloud_id)
