from orchestrator.serving.run import main

main()
