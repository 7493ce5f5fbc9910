# Unit tests: one process, no MPI launcher. One ctest entry for the whole
# binary: LibTorch takes ~0.4 s to start, too much to pay once per test.
add_executable(test_unit test_idx.cpp test_sampler.cpp test_task_stream.cpp test_metrics.cpp test_algorithms.cpp
                         test_file_io.cpp test_checkpoint.cpp test_sweep_plan.cpp test_logging.cpp test_models.cpp test_trainer.cpp
                         test_multi_dataset.cpp test_dataset_formats.cpp test_hat.cpp test_clnp.cpp test_compression.cpp
                         test_fid.cpp test_format_writers.cpp test_generation.cpp test_dgm.cpp)
target_link_libraries(test_unit PRIVATE clx_runtime clx_sweep GTest::gtest GTest::gtest_main)
if(CLX_PCH)
  target_precompile_headers(test_unit REUSE_FROM clx_runtime)
endif()
# The networks of continual image generation (models/generative.h).
target_sources(test_unit PRIVATE test_generative_models.cpp test_gan.cpp test_dgr.cpp)
# The image-folder tests write their trees with OpenCV.
if(OpenCV_FOUND)
  target_sources(test_unit PRIVATE test_image_folder.cpp)
  target_include_directories(test_unit PRIVATE ${OpenCV_INCLUDE_DIRS})
  target_link_libraries(test_unit PRIVATE ${OpenCV_LIBS})
endif()
add_test(NAME unit COMMAND test_unit)
set_tests_properties(unit PROPERTIES LABELS unit TIMEOUT 300)
